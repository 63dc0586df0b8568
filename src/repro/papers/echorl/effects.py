"""The numbers that decide E1-E3, from the RL jobs' metrics and histories, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. A
difference counts only beyond the seed spread: margin = difference - spread, where spread is the
larger of the two arms' standard deviations over seeds (E1: the std over seeds of the increase).
E3 compares the mean of ID and OOD accuracy.
"""
from __future__ import annotations

import statistics


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def arm_summary(runs: list[dict]) -> dict:
    out = {"seeds": len(runs)}
    for key in ("id", "ood"):
        out[f"{key}_mean"], out[f"{key}_std"] = mean_std([r[f"{key}_accuracy"] for r in runs])
    out["avg_mean"], out["avg_std"] = mean_std([(r["id_accuracy"] + r["ood_accuracy"]) / 2 for r in runs])
    out["seconds_per_step"] = statistics.fmean(r["seconds_per_step"] for r in runs)
    out["all_success_last_quarter"] = statistics.fmean(r["all_success_last_quarter"] for r in runs)
    return out


def compare(arms: dict, a: str, b: str, key: str) -> dict:
    """a minus b on `key` (id/ood/avg), with the spread and the margin beyond it."""
    if a not in arms or b not in arms:
        return {"gain": None, "spread": None, "margin": None}
    gain = arms[a][f"{key}_mean"] - arms[b][f"{key}_mean"]
    spread = max(arms[a][f"{key}_std"], arms[b][f"{key}_std"])
    return {"gain": gain, "spread": spread, "margin": gain - spread}


def base_arm(arms: dict, name: str) -> str | None:
    """The arm without a clip that samples like `name` (GRPO, or the dynamic-sampling method)."""
    same = [a for a, spec in arms.items()
            if spec["clip"] == "none" and spec.get("dynamic_sampling") == arms[name].get("dynamic_sampling")]
    return same[0] if same else None


def echo_vs_base(runs: dict[str, list[dict]], arms: dict) -> list[dict]:
    """Every max-entropy EchoClip arm (the beta sweep, the second RLVR method) against its base arm on
    the seeds both ran (paired, so a one-seed arm is not compared with a three-seed mean)."""
    rows = []
    for name, spec in arms.items():
        base = base_arm(arms, name)
        if spec["clip"] != "max_entropy" or name not in runs or base not in runs:
            continue
        by_seed = {r["seed"]: r for r in runs[base]}
        row = {"arm": name, "base": base, "beta": spec["beta"], "rollout_choice": spec["rollout_choice"],
               "seeds": sorted(r["seed"] for r in runs[name])}
        paired = [r for r in runs[name] if r["seed"] in by_seed]
        for key in ("id", "ood"):
            row[key] = statistics.fmean(r[f"{key}_accuracy"] for r in runs[name])
            row[f"{key}_vs_base"] = (statistics.fmean(r[f"{key}_accuracy"] - by_seed[r["seed"]][f"{key}_accuracy"]
                                                     for r in paired) if paired else None)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["base"], r["beta"], r["arm"]))


def decide(runs: dict[str, list[dict]], sft: dict, arm_params: dict) -> dict:
    """`runs`: arm -> the RL jobs' metrics (one per seed); `sft`: the SFT stage's metrics."""
    arms = {name: arm_summary(rs) for name, rs in runs.items()}
    grpo = runs["grpo"]
    inc = [r["all_success_last_quarter"] - r["all_success_first_quarter"] for r in grpo]
    inc_mean, inc_std = mean_std(inc)
    e1 = {"first_quarter": statistics.fmean(r["all_success_first_quarter"] for r in grpo),
          "last_quarter": statistics.fmean(r["all_success_last_quarter"] for r in grpo),
          "increase": inc_mean, "spread": inc_std, "margin": inc_mean - inc_std,
          "pg_norm_first_quarter": statistics.fmean(r["pg_norm_first_quarter"] for r in grpo),
          "pg_norm_last_quarter": statistics.fmean(r["pg_norm_last_quarter"] for r in grpo)}
    e2 = {}
    for key in ("id", "ood"):
        c = compare(arms, "echo", "grpo", key)
        e2.update({f"{key}_gain": c["gain"], f"{key}_spread": c["spread"], f"{key}_margin": c["margin"]})
    e2["overhead"] = arms["echo"]["seconds_per_step"] / arms["grpo"]["seconds_per_step"] - 1
    e3 = {}
    for other in ("random", "min_entropy", "whole_sft"):
        c = compare(arms, "echo", "random_step" if other == "random" else other, "avg")
        e3.update({f"vs_{other}_gain": c["gain"], f"vs_{other}_spread": c["spread"],
                   f"vs_{other}_margin": c["margin"]})
    return {"arms": arms, "sft": {k: sft[k] for k in ("id_accuracy", "ood_accuracy", "steps")},
            "entropy_profile": sft["entropy_profile"], "e1": e1, "e2": e2, "e3": e3,
            "echo_vs_base": echo_vs_base(runs, arm_params)}


def _pt(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def report_tables(m: dict, arms: dict) -> str:
    """Markdown sections: arms, EchoClip vs its base arm, accuracy per arm, E1-E3 numbers, the step-entropy profile."""
    s = m["sft"]
    lines = ["## Arms", "", "| arm | sampling | clip ends at | beta | clip taken from |", "|---|---|---|---|---|"]
    for name, a in arms.items():
        ds = a.get("dynamic_sampling")
        sampling = f"dynamic ({ds['oversample']}x prompts, degenerate groups dropped)" if ds else "GRPO"
        lines.append(f"| {name} | {sampling} | {a['clip']} | {a.get('beta', '')} | "
                     f"{dict(peak='the rollout with the highest peak step entropy', all='every rollout').get(a.get('rollout_choice'), '')} |")
    lines += ["", "## EchoClip against its base method: beta sweep and the second RLVR method", "",
              "Each arm that clips at the highest-entropy step, against the arm without a clip that samples "
              "the same way (GRPO, or DAPO-style dynamic sampling), on the seeds both ran. beta is 0.001 at "
              "7B; at this scale the clip NLL and the policy loss have other magnitudes, so it is swept here. "
              "The `echo` arm's beta was fixed before the runs (E2/E3 use it).", "",
              "| arm | base | beta | seeds | ID | OOD | ID - base | OOD - base |", "|---|---|---|---|---|---|---|---|"]
    for r in m["echo_vs_base"]:
        lines.append(f"| {r['arm']} | {r['base']} | {r['beta']:g} | {', '.join(map(str, r['seeds']))} | "
                     f"{100 * r['id']:.1f} | {100 * r['ood']:.1f} | {_pt(r['id_vs_base'])} | {_pt(r['ood_vs_base'])} |")
    lines += ["", "## Accuracy per arm (greedy, % of test prompts; mean ± std over seeds)", "",
             f"SFT initialisation (all arms start here; {s['steps']} SFT steps): ID {100 * s['id_accuracy']:.1f}%, "
             f"OOD {100 * s['ood_accuracy']:.1f}%.", "",
             "| arm | seeds | ID | OOD | mean(ID, OOD) | all-success groups, last quarter | s / step |",
             "|---|---|---|---|---|---|---|"]
    for name, a in m["arms"].items():
        lines.append(f"| {name} | {a['seeds']} | {100 * a['id_mean']:.1f} ± {100 * a['id_std']:.1f} | "
                     f"{100 * a['ood_mean']:.1f} ± {100 * a['ood_std']:.1f} | "
                     f"{100 * a['avg_mean']:.1f} ± {100 * a['avg_std']:.1f} | "
                     f"{100 * a['all_success_last_quarter']:.0f}% | {a['seconds_per_step']:.2f} |")
    e1, e2, e3 = m["e1"], m["e2"], m["e3"]
    lines += ["", "## E1: advantage-degenerated groups during GRPO", "",
              "| quantity | first quarter | last quarter |", "|---|---|---|",
              f"| all-success groups (fraction) | {e1['first_quarter']:.3f} | {e1['last_quarter']:.3f} |",
              f"| policy-gradient norm | {e1['pg_norm_first_quarter']:.4f} | {e1['pg_norm_last_quarter']:.4f} |",
              "", f"Increase {e1['increase']:+.3f}, seed std of the increase {e1['spread']:.3f}.", "",
              "## E2 / E3: differences in accuracy points (margin = difference - seed spread)", "",
              "| comparison | difference | spread | margin |", "|---|---|---|---|"]
    rows = [("echo - grpo, ID", "id", e2), ("echo - grpo, OOD", "ood", e2),
            ("echo - random_step, mean(ID, OOD)", "vs_random", e3),
            ("echo - min_entropy, mean(ID, OOD)", "vs_min_entropy", e3),
            ("echo - whole_sft, mean(ID, OOD)", "vs_whole_sft", e3)]
    for label, key, src in rows:
        lines.append(f"| {label} | {_pt(src[f'{key}_gain'])} | {_pt(src[f'{key}_spread'])} | "
                     f"{_pt(src[f'{key}_margin'])} |")
    lines += ["", f"EchoClip overhead per RL step vs GRPO: {100 * e2['overhead']:+.0f}% "
              "(wall time on a shared CPU, indicative only).", ""]
    p = m["entropy_profile"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines += ["## Step-entropy profile of the SFT policy (temperature-1 samples, ID prompts)", "",
              f"Mean step entropy: carry steps {fmt(p['carry_steps'])} nats, no-carry steps "
              f"{fmt(p['no_carry_steps'])} nats. The highest-entropy step is a carry step in "
              f"{fmt(p['peak_at_carry_fraction'])} of responses (share of carry steps: "
              f"{fmt(p['carry_base_rate'])}).", ""]
    return "\n".join(lines) + "\n"
