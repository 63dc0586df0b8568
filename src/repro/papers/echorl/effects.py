"""The effects that decide E1-E3, from the RL jobs' metrics, histories and per-prompt results, and the
report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. Every
run record is an RL job's metrics plus `correct`: {split: greedy correctness per test prompt}, the same
prompts in the same order for every arm and seed. Effects (repro.report.intervals):
- E1: the rise of the all-success group fraction from the first to the last quarter of GRPO training,
  one value per GRPO seed, interval over seeds.
- E2, E3 and the EchoClip-vs-base tables: arm minus arm on the seeds both ran (paired: same seed, same
  SFT init), per-prompt differences (paired: same prompts), interval over seeds then prompts within
  seeds (`hierarchical`), with the prompts-only interval beside it. E3 reads mean(ID, OOD) accuracy.
"""
from __future__ import annotations

import statistics

from repro.report.intervals import hierarchical, mean_ci, prob_improvement, spread

SPLITS = ("id", "ood")


def avg_items(id_items: list[float], ood_items: list[float]) -> list[float]:
    """One list whose mean is mean(mean(ID), mean(OOD)): each split's items weighted by
    n / (2 n_split), i.e. unweighted when the two splits have equal size."""
    n = len(id_items) + len(ood_items)
    return ([x * n / (2 * len(id_items)) for x in id_items] +
            [x * n / (2 * len(ood_items)) for x in ood_items])


def items(run: dict, key: str) -> list[float]:
    """A run's per-prompt correctness on `key`: a split, or `avg` (both splits, see avg_items)."""
    c = run["correct"]
    return avg_items(c["id"], c["ood"]) if key == "avg" else c[key]


def paired(runs: dict[str, list[dict]], a: str, b: str, key: str) -> dict:
    """`a` minus `b` on `key` over the seeds both arms ran: per seed, the per-prompt differences;
    hierarchical interval (seeds x prompts) and the prompts-only interval (`ci_items`); and, as the
    few-seed summary rliable reports, the probability that a run of `a` beats a run of `b`."""
    by_seed = {r["seed"]: r for r in runs[b]}
    pairs = sorted(((r["seed"], r) for r in runs[a] if r["seed"] in by_seed), key=lambda p: p[0])
    diffs = [[x - y for x, y in zip(items(r, key), items(by_seed[s], key), strict=True)] for s, r in pairs]
    scores = [[statistics.fmean(items(r, key)) for r in runs[arm]] for arm in (a, b)]
    return {**hierarchical(diffs), "seeds": [s for s, _ in pairs], "p_improvement": prob_improvement(*scores)}


def arm_summary(rs: list[dict]) -> dict:
    """Descriptive rows of the accuracy table: spread over seeds (mean, std, min, max, n)."""
    out = {key: spread([statistics.fmean(items(r, key)) for r in rs]) for key in (*SPLITS, "avg")}
    out.update(seeds=sorted(r["seed"] for r in rs),
               seconds_per_step=statistics.fmean(r["seconds_per_step"] for r in rs),
               all_success_last_quarter=statistics.fmean(r["all_success_last_quarter"] for r in rs),
               clips_per_step=statistics.fmean(r["clips_per_step"] for r in rs))
    return out


def base_arm(arms: dict, name: str) -> str | None:
    """The arm without a clip that samples like `name` (GRPO, or the dynamic-sampling method)."""
    same = [a for a, spec in arms.items()
            if spec["clip"] == "none" and spec.get("dynamic_sampling") == arms[name].get("dynamic_sampling")]
    return same[0] if same else None


def echo_vs_base(runs: dict[str, list[dict]], arms: dict) -> list[dict]:
    """Every max-entropy EchoClip arm (the beta sweep, the second RLVR method) against its base arm on
    the seeds both ran: paired by seed and prompt. Non-evidence tables where one seed is shared."""
    rows = []
    for name, spec in arms.items():
        base = base_arm(arms, name)
        if spec["clip"] != "max_entropy" or name not in runs or base not in runs:
            continue
        rows.append({"arm": name, "base": base, "beta": spec["beta"], "rollout_choice": spec["rollout_choice"],
                     **{key: paired(runs, name, base, key) for key in SPLITS}})
    return sorted(rows, key=lambda r: (r["base"], r["beta"], r["arm"]))


def decide(runs: dict[str, list[dict]], sft: dict, arm_params: dict) -> dict:
    """`runs`: arm -> run records (one per seed); `sft`: the SFT stage's metrics."""
    grpo = sorted(runs["grpo"], key=lambda r: r["seed"])
    quarters = {q: [r[f"all_success_{q}_quarter"] for r in grpo] for q in ("first", "last")}
    e1 = {"increase": mean_ci([b - a for a, b in zip(quarters["first"], quarters["last"])]),
          "first_quarter": spread(quarters["first"]), "last_quarter": spread(quarters["last"]),
          "pg_norm_first_quarter": spread([r["pg_norm_first_quarter"] for r in grpo]),
          "pg_norm_last_quarter": spread([r["pg_norm_last_quarter"] for r in grpo])}
    e2 = {key: paired(runs, "echo", "grpo", key) for key in SPLITS}
    e2["overhead"] = (statistics.fmean(r["seconds_per_step"] for r in runs["echo"]) /
                      statistics.fmean(r["seconds_per_step"] for r in grpo) - 1)
    e3 = {f"vs_{short}": paired(runs, "echo", arm, "avg")
          for short, arm in (("random", "random_step"), ("min_entropy", "min_entropy"), ("whole_sft", "whole_sft"))
          if arm in runs}
    return {"arms": {name: arm_summary(runs[name]) for name in arm_params if name in runs},
            "sft": {k: sft[k] for k in ("id_accuracy", "ood_accuracy", "steps")},
            "test_prompts": {key: len(grpo[0]["correct"][key]) for key in SPLITS},
            "entropy_profile": sft["entropy_profile"], "e1": e1, "e2": e2, "e3": e3,
            "echo_vs_base": echo_vs_base(runs, arm_params)}


def _pt(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _ci(ci) -> str:
    return "n/a (one seed)" if ci[0] is None else f"[{_pt(ci[0])}, {_pt(ci[1])}]"


def _effect_row(label: str, e: dict) -> str:
    return (f"| {label} | {_pt(e['value'])} | {_ci(e['ci'])} | {_ci(e['ci_items'])} | "
            f"{e['p_improvement']:.2f} | {', '.join(map(str, e['seeds']))} |")


def _kinds(kinds: list[dict]) -> str:
    return " or ".join(f"{k['operands'][0]}-{k['operands'][1]} operands of {k['digits'][0]}-{k['digits'][1]} digits"
                       for k in kinds)


def design_section(m: dict, params: dict) -> list[str]:
    """What the amended design (issue 16) changed and why, with the numbers this run measured."""
    src, stop, s, n = params["data"]["source"], params["sft"]["stop"], m["sft"], m["test_prompts"]
    echo, seeds = m["arms"]["echo"], {a: len(v["seeds"]) for a, v in m["arms"].items()}
    if src["kind"] == "generated":
        split = (f"ID: {_kinds([src['id']])}; OOD: {_kinds(src['ood'])}, a combination held out of every "
                 "training split (SFT solutions, RL prompts, ID test)")
    else:
        split = "ID and OOD: the hub splits in params"
    stop_text = f"{100 * stop['id_accuracy']:.0f}% greedy accuracy on RL prompts" if stop else "no SFT"
    return [
        "## Design (amended for issue 16) and why", "",
        f"- OOD split. {split}. The SFT init solves {100 * s['ood_accuracy']:.1f}% of the OOD prompts "
        f"(ID {100 * s['id_accuracy']:.1f}%). The first design's OOD split (more operands, or 3-digit operands) "
        "sat at 0-0.6% for every arm, so E2's OOD half could not be decided; the amendment asks for a split "
        "the SFT model solves 10-40% of the time. For mini, candidates were piloted on the SFT checkpoint only, "
        "before any RL run (params/echorl.yaml lists them): every unseen length, digit count or operand "
        "value scored 0-6%, so mini's OOD split is an unseen combination of seen parts (every operand "
        "two-digit).",
        f"- Regime. SFT stops at {stop_text} (spec: 50-70%) and RL samples "
        f"{params['rollout']['prompts_per_step']} prompts x {params['rollout']['group_size']} rollouts per "
        "step (the amended mini design: 70% and 8 prompts; the first stopped at 60% with 4 prompts), so that "
        f"EchoClip has all-success groups to act on: {echo['clips_per_step']:.2f} clips per step in the echo "
        "arm (mean over seeds; the accuracy table gives every arm's).",
        f"- Power. GRPO and GRPO+EchoClip on {seeds['grpo']} seeds, the ablations on "
        f"{', '.join(str(seeds[a]) for a in ('random_step', 'min_entropy', 'whole_sft') if a in seeds)}; "
        f"every RL job evaluated greedily on the same {n['id']} ID and {n['ood']} OOD prompts (the first mini "
        "design: 1024 + 1024); "
        "E2 and E3 are decided on intervals paired by seed and prompt.",
        f"- Budget. {params['rl']['steps']} RL steps per job; the one-seed beta sweep and the DAPO-style arms "
        "(non-evidence tables) are run only where the profile lists them.", ""]


def report_tables(m: dict, arms: dict, params: dict) -> str:
    """Markdown sections: the amended design, what the seeds vary, arms, E1-E3 effects with both
    intervals, EchoClip vs its base arm, accuracy per arm, the step-entropy profile."""
    s, n = m["sft"], m["test_prompts"]
    lines = [*design_section(m, params), "## Seeds", "",
             "The data and the SFT warm-up are one job shared by every arm (seed 0); the seeds vary the RL "
             "stage only (rollout sampling, prompt order, the random-step clip). Arms are compared on the "
             f"seeds they share and on the same {n['id']} ID and {n['ood']} OOD test prompts (greedy).", "",
             "## Arms", "", "| arm | sampling | clip ends at | beta | clip taken from | seeds |", "|---|---|---|---|---|---|"]
    for name, a in arms.items():
        ds = a.get("dynamic_sampling")
        sampling = f"dynamic ({ds['oversample']}x prompts, degenerate groups dropped)" if ds else "GRPO"
        choice = dict(peak="the rollout with the highest peak step entropy", all="every rollout")
        lines.append(f"| {name} | {sampling} | {a['clip']} | {a.get('beta', '')} | "
                     f"{choice.get(a.get('rollout_choice'), '')} | "
                     f"{', '.join(map(str, m['arms'][name]['seeds'])) if name in m['arms'] else ''} |")
    e1, e2, e3 = m["e1"], m["e2"], m["e3"]
    inc = e1["increase"]
    lines += ["", "## E1: advantage-degenerated (all-success) groups during GRPO", "",
              "| quantity | first quarter | last quarter |", "|---|---|---|",
              f"| all-success groups (fraction, mean ± std over {inc['n']} seeds) | "
              f"{e1['first_quarter']['mean']:.3f} ± {e1['first_quarter']['std']:.3f} | "
              f"{e1['last_quarter']['mean']:.3f} ± {e1['last_quarter']['std']:.3f} |",
              f"| policy-gradient norm | {e1['pg_norm_first_quarter']['mean']:.4f} | "
              f"{e1['pg_norm_last_quarter']['mean']:.4f} |", "",
              f"Increase {inc['value']:+.3f}, 95% CI over seeds "
              + ("n/a (one seed)" if inc["ci"][0] is None else f"[{inc['ci'][0]:+.3f}, {inc['ci'][1]:+.3f}]") + ".",
              "", "## E2 / E3: paired differences in accuracy points", "",
              "Same seed, same test prompts. The interval over seeds x prompts decides the check; the "
              "prompts-only interval (seeds held fixed) shows what a larger test set alone would narrow.", "",
              "P(improvement): the probability that a run (seed) of the first arm scores above one of the "
              "second, ties counting half (rliable's few-seed summary; descriptive, no check reads it).", "",
              "| comparison | difference | 95% CI seeds x prompts | 95% CI prompts only | P(improvement) | seeds |",
              "|---|---|---|---|---|---|",
              _effect_row("echo - grpo, ID (E2)", e2["id"]), _effect_row("echo - grpo, OOD (E2)", e2["ood"])]
    for key, other in (("vs_random", "random_step"), ("vs_min_entropy", "min_entropy"), ("vs_whole_sft", "whole_sft")):
        if key in e3:
            lines.append(_effect_row(f"echo - {other}, mean(ID, OOD){' (E3)' if other != 'whole_sft' else ''}",
                                     e3[key]))
    lines += ["", f"EchoClip acted on {m['arms']['echo']['clips_per_step']:.2f} all-success groups per RL step "
              "(echo arm, mean over seeds).", "",
              f"EchoClip overhead per RL step vs GRPO: {100 * e2['overhead']:+.0f}% "
              "(wall time on a shared CPU, indicative only).", "",
              "## EchoClip against its base method: beta sweep and the second RLVR method", "",
              "Not evidence for any claim (one-seed sweeps, amendment): each arm that clips at the "
              "highest-entropy step against the arm without a clip that samples the same way (GRPO, or "
              "DAPO-style dynamic sampling), paired on the seeds both ran and on the same prompts. beta is "
              "0.001 at 7B; at this scale the clip NLL and the policy loss have other magnitudes, so it is "
              "swept here. The `echo` arm's beta was fixed before the runs (E2/E3 use it).", "",
              "| arm | base | beta | seeds | ID - base | 95% CI prompts only | OOD - base | 95% CI prompts only |",
              "|---|---|---|---|---|---|---|---|"]
    for r in m["echo_vs_base"]:
        lines.append(f"| {r['arm']} | {r['base']} | {r['beta']:g} | {', '.join(map(str, r['id']['seeds']))} | "
                     f"{_pt(r['id']['value'])} | {_ci(r['id']['ci_items'])} | "
                     f"{_pt(r['ood']['value'])} | {_ci(r['ood']['ci_items'])} |")
    lines += ["", "## Accuracy per arm (greedy, % of test prompts; mean ± std over seeds)", "",
              f"SFT initialisation (all arms start here; {s['steps']} SFT steps): ID {100 * s['id_accuracy']:.1f}%, "
              f"OOD {100 * s['ood_accuracy']:.1f}%.", "",
              "| arm | seeds | ID | OOD | mean(ID, OOD) | all-success groups, last quarter | clips / step | s / step |",
              "|---|---|---|---|---|---|---|---|"]
    for name, a in m["arms"].items():
        cell = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731
        lines.append(f"| {name} | {len(a['seeds'])} | {cell(a['id'])} | {cell(a['ood'])} | {cell(a['avg'])} | "
                     f"{100 * a['all_success_last_quarter']:.0f}% | {a['clips_per_step']:.2f} | "
                     f"{a['seconds_per_step']:.2f} |")
    p = m["entropy_profile"]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines += ["", "## Step-entropy profile of the SFT policy (temperature-1 samples, ID prompts)", "",
              f"Mean step entropy: carry steps {fmt(p['carry_steps'])} nats, no-carry steps "
              f"{fmt(p['no_carry_steps'])} nats. The highest-entropy step is a carry step in "
              f"{fmt(p['peak_at_carry_fraction'])} of responses (share of carry steps: "
              f"{fmt(p['carry_base_rate'])}).", ""]
    return "\n".join(lines) + "\n"
