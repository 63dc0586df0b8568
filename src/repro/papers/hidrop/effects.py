"""The effects that decide H1-H3, from the evaluate jobs (one per arm and seed), the speed pairs and
the layer analysis, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. Every arm
is fine-tuned and evaluated once per seed on the same test questions, so two arms are compared per
(seed, question) item: accuracy differences are paired and hierarchical (seeds resampled, then
questions within each seed; repro.report.intervals.hierarchical). The visual tokens per layer are
fixed by the schedules: they are counted in the forward and labelled "by design". Speedups come from
interleaved timing pairs, with the A/A control.
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.core import timing
from repro.report import intervals
from repro.report.verdicts import fmt_ci, seeds_items_table


def per_item(evals: dict, arm: str) -> dict[int, np.ndarray]:
    """seed -> 0/1 correctness of each test question."""
    return {s: np.asarray(m["correct"], float) for s, m in sorted(evals[arm].items())}


difference = intervals.hierarchical_diff  # {seed: items} per arm, paired by (seed, item)


def ratio(a: dict, b: dict) -> dict:
    """Accuracy of a / accuracy of b, paired by (seed, question)."""
    return intervals.hierarchical_ratio(a, b, "the reference arm answers nothing correctly: no ratio")


def budget(evals: dict, arm: str) -> dict:
    """Average visual tokens per layer (all layers, zero-token ones included) as counted in every
    seed's evaluation forward, and the compression 1 - average / image tokens."""
    avgs = [m["visual_tokens_avg"] for m in evals[arm].values()]
    first = next(iter(evals[arm].values()))
    full = first["visual_tokens_full"]
    return {"average": statistics.fmean(avgs), "compression": 1 - statistics.fmean(avgs) / full,
            "per_layer": first["visual_tokens_per_layer"], "full": full}


def compression(evals: dict, arm: str) -> dict:
    b = budget(evals, arm)
    why = (f"the schedule fixes it: {b['average']:.2f} of {b['full']} visual tokens per layer on average, counted "
           f"in the forward of {len(evals[arm])} seeds' evaluations")
    return intervals.by_design(b["compression"], why)


def speed_effects(speed: dict) -> dict:
    """Per timed path (train step, prefill): the A/A control and each arm's speedup over vanilla,
    marked when the control was unstable, and the analytic (recorded GEMM) FLOP ratios."""
    out = {}
    for what, by_name in speed["pairs"].items():
        ctrl = timing.control(intervals.speedup(by_name[timing.AA]))
        fl = speed["flops"][what]
        base = max(fl.values())  # vanilla spends the most
        out[what] = {"control": ctrl,
                     "arms": {n: {**timing.mark_unstable(intervals.speedup(p), ctrl), "flop_ratio": base / fl[n]}
                              for n, p in by_name.items() if n != timing.AA}}
    return out


def arm_rows(evals: dict, vanilla: str) -> dict:
    """Per arm: accuracy over seeds, paired ratio to vanilla, accuracy per question type, measured
    visual tokens and prefill FLOPs relative to vanilla."""
    base = per_item(evals, vanilla)
    base_flops = statistics.fmean(m["prefill_flops"] for m in evals[vanilla].values())
    rows = {}
    for name, by_seed in evals.items():
        kinds = next(iter(by_seed.values()))["by_kind"]
        rows[name] = {"accuracy": intervals.spread([m["accuracy"] for m in by_seed.values()]),
                      "ratio_to_vanilla": ratio(per_item(evals, name), base),
                      "by_kind": {k: statistics.fmean(m["by_kind"][k] for m in by_seed.values()) for k in kinds},
                      **budget(evals, name),
                      "flops_relative": statistics.fmean(m["prefill_flops"] for m in by_seed.values()) / base_flops}
    return rows


def sweep(evals: dict, pairs: list[list[str]]) -> list[dict]:
    """HiDrop - PDrop accuracy at each budget of the sweep (paired), with both measured budgets."""
    return [{"hidrop": h, "pdrop": p, "budget_hidrop": budget(evals, h)["average"],
             "budget_pdrop": budget(evals, p)["average"],
             "accuracy_hidrop": intervals.mean_ci([m["accuracy"] for m in evals[h].values()]),
             "accuracy_pdrop": intervals.mean_ci([m["accuracy"] for m in evals[p].values()]),
             "difference": difference(per_item(evals, h), per_item(evals, p))} for h, p in pairs]


def decide(evals: dict, speed: dict, roles: dict, sweep_pairs: list[list[str]], layers: dict | None = None) -> dict:
    """evals: arm -> seed -> evaluate metrics. h1: HiDrop's compression (by design) and accuracy
    relative to vanilla, vanilla minus blind; h2: training-step speedup of HiDrop over vanilla
    (interleaved pairs); h3: HiDrop minus PDrop at HiDrop's budget, and the sweep."""
    arm = lambda role: per_item(evals, roles[role])  # noqa: E731
    sp = speed_effects(speed)
    ablations = {n: difference(arm("hidrop"), per_item(evals, roles[n])) for n in
                 ("pdrop_persistent", "no_late", "no_exit", "linear") if roles.get(n) in evals}
    return {
        "seeds": sorted(evals[roles["vanilla"]]),
        "arms": arm_rows(evals, roles["vanilla"]),
        "h1": {"compression": compression(evals, roles["hidrop"]),
               "accuracy_ratio": ratio(arm("hidrop"), arm("vanilla")),
               "vanilla_minus_blind": difference(arm("vanilla"), arm("blind"))},
        "h2": {"train_speedup": sp["train"]["arms"][roles["hidrop"]], "control": sp["train"]["control"],
               "flop_ratio": sp["train"]["arms"][roles["hidrop"]]["flop_ratio"]},
        "h3": {"hidrop_minus_pdrop": difference(arm("hidrop"), arm("pdrop")),
               "budget_hidrop": budget(evals, roles["hidrop"])["average"],
               "budget_pdrop": budget(evals, roles["pdrop"])["average"],
               "hidrop_minus": ablations, "sweep": sweep(evals, sweep_pairs)},
        "speed": sp,
        "layers": (layers or {}).get("mean", {}),
    }


# ---------------------------------------------------------------- report tables


def seeds_section(seeds: list[int]) -> list[str]:
    return ["## What the seeds vary", "",
            "- `pretrain` (every weight, every visual token, captions + questions): one run with the workflow "
            "seed, shared by every arm and seed.",
            f"- `finetune/{{arm}}/seed{{seed}}` and `evaluate/{{arm}}/seed{{seed}}`: seeds {seeds}; the seed draws "
            "the fine-tuning batches, the same for every arm of one seed.",
            "- The test questions are fixed, so arms are paired by (seed, question); intervals resample seeds, "
            "then questions within each seed (95%, percentile bootstrap). `CI questions only` holds the seeds "
            "fixed.",
            "- `speed` times random-init models (weights do not change the cost); `layers` profiles the vanilla "
            "arm of every seed.", ""]


def effects_section(m: dict) -> list[str]:
    h1, h3 = m["h1"], m["h3"]
    rows = [("H1 accuracy HiDrop / vanilla", h1["accuracy_ratio"]),
            ("H1 accuracy vanilla - blind", h1["vanilla_minus_blind"]),
            ("H3 accuracy HiDrop - PDrop (HiDrop's budget)", h3["hidrop_minus_pdrop"]),
            *((f"HiDrop - {n}", e) for n, e in h3["hidrop_minus"].items())]
    lines = ["## Claim effects (paired by seed and question)", ""]
    lines += seeds_items_table(rows, "questions")
    lines += ["", f"- H1 compression (by design, counted in the forward): {h1['compression']['value']:.1%} "
              f"({h1['compression']['note']}).",
              f"- H3 budgets, measured: HiDrop {h3['budget_hidrop']:.2f}, PDrop {h3['budget_pdrop']:.2f} visual "
              "tokens per layer on average (PDrop's lambda is the smallest that spends at least HiDrop's budget).",
              ""]
    return lines


def arms_section(m: dict) -> list[str]:
    kinds = list(next(iter(m["arms"].values()))["by_kind"])
    lines = ["## Arms (test questions; means over seeds)", "",
             "| arm | accuracy mean ± std | / vanilla [95% CI] | " + " | ".join(kinds)
             + " | avg visual tokens / layer | compression | visual tokens per layer | prefill FLOPs / vanilla |",
             "|---|---|---|" + "---|" * len(kinds) + "---|---|---|---|"]
    for name, r in m["arms"].items():
        a = r["accuracy"]
        lines.append(f"| {name} | {a['mean']:.3f} ± {a['std']:.3f} | {fmt_ci(r['ratio_to_vanilla'])} | "
                     + " | ".join(f"{r['by_kind'][k]:.3f}" for k in kinds)
                     + f" | {r['average']:.2f} | {r['compression']:.1%} | "
                     + " ".join(str(v) for v in r["per_layer"]) + f" | {r['flops_relative']:.3f} |")
    return lines + [""]


def sweep_section(m: dict) -> list[str]:
    lines = ["## Budget sweep: HiDrop and PDrop at three budgets (no check reads it)", "",
             "| HiDrop arm | PDrop arm | avg visual tokens HiDrop / PDrop | accuracy HiDrop | accuracy PDrop | "
             "HiDrop - PDrop [95% CI] |", "|---|---|---|---|---|---|"]
    for r in m["h3"]["sweep"]:
        lines.append(f"| {r['hidrop']} | {r['pdrop']} | {r['budget_hidrop']:.2f} / {r['budget_pdrop']:.2f} | "
                     f"{fmt_ci(r['accuracy_hidrop'])} | {fmt_ci(r['accuracy_pdrop'])} | {fmt_ci(r['difference'])} |")
    return lines + [""]


def speed_section(m: dict) -> list[str]:
    lines = ["## Speed: interleaved pairs with vanilla (same per-layer loop)", "",
             "Speedup = vanilla time / arm time per pair; median over pairs with its 95% interval. FLOP ratio: "
             "the language model's GEMM FLOPs recorded in one forward (the vision side, the same for both, "
             "is not counted).", "",
             "| path | arm | ms (median) | speedup [95% CI] | FLOP ratio | pairs | timing |", "|---|---|---|---|---|---|---|"]
    for what, cell in m["speed"].items():
        c = cell["control"]
        lines.append(f"| {what} | A/A control | {1000 * c['seconds']:.1f} | {fmt_ci(c)} | 1 | {c['n']} | "
                     f"{'stable' if c['stable'] else 'UNSTABLE'} |")
        for name, e in cell["arms"].items():
            lines.append(f"| {what} | {name} | {1000 * e['seconds']:.1f} | {fmt_ci(e)} | {e['flop_ratio']:.2f} | "
                         f"{e['n']} | {'unstable: ' + e['unstable'] if e.get('unstable') else 'stable'} |")
    return lines + [""]


def layers_section(m: dict) -> list[str]:
    lay = m["layers"]
    if not lay:
        return []
    lines = ["## Layer analysis of the vanilla arm (mean over seeds)", "",
             "| layer | query attention on visual tokens | 1 - cos, visual tokens | 1 - cos, text tokens |",
             "|---|---|---|---|"]
    for i, (a, v, t) in enumerate(zip(lay["visual_attention"], lay["visual_change"], lay["text_change"])):
        lines.append(f"| {i} | {a:.3f} | {v:.4f} | {t:.4f} |")
    return lines + [""]


def per_seed_section(evals: dict, seeds: list[int]) -> list[str]:
    lines = ["## Accuracy per seed", "", "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|" + "---|" * len(seeds)]
    for name, by_seed in evals.items():
        lines.append(f"| {name} | " + " | ".join(f"{by_seed[s]['accuracy']:.3f}" for s in seeds) + " |")
    return lines + [""]


def report_tables(m: dict, evals: dict, design: list[str]) -> str:
    """Markdown: the design, seeds, claim effects with both intervals, arms, sweep, speed, layers."""
    lines = (design + seeds_section(m["seeds"]) + effects_section(m) + arms_section(m) + sweep_section(m)
             + speed_section(m) + layers_section(m) + per_seed_section(evals, m["seeds"]))
    return "\n".join(lines) + "\n"
