"""The effects that decide H1-H3, from the evaluate jobs (one per arm and seed), the speed pairs and
the layer analysis, the controls, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. Every arm
is fine-tuned and evaluated once per seed on the same test questions, so two arms are compared per
(seed, question) item: accuracy differences and ratios are paired, with the crossed seeds x questions
interval (repro.report.intervals.hierarchical: every seed answers the same questions). The visual
tokens per layer are fixed by the schedules: they are counted in the forward and labelled "by
design". Speedups come from interleaved timing pairs, judged against the job's A/A control
(`intervals.against_aa`). The seed-only A/A control is the vanilla arm fine-tuned again on disjoint
seeds, compared with vanilla through the claims' own difference and ratio.
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.core.timing import AA
from repro.report import intervals
from repro.report.verdicts import fmt_ci, fmt_number, seed_control, seeds_items_table, timing_control

MATCH_TOLERANCE = 0.05  # budgets within 5% count as equal (integer keep counts rarely hit one exactly)
CLAIM_ROLES = ("vanilla", "blind", "hidrop", "pdrop")  # the arms the claims read: every seed


def per_item(evals: dict, arm: str) -> dict[int, np.ndarray]:
    """seed -> 0/1 correctness of each test question."""
    return {s: np.asarray(m["correct"], float) for s, m in sorted(evals[arm].items())}


def shared(a: dict, b: dict) -> tuple[dict, dict]:
    """Two arms' items on the seeds both ran (arms no claim reads run on `descriptive_seeds`, a subset)."""
    seeds = sorted(set(a) & set(b))
    return {s: a[s] for s in seeds}, {s: b[s] for s in seeds}


def difference(a: dict, b: dict) -> dict:
    """Accuracy of a minus b, paired by (seed, question) on the seeds both ran."""
    return intervals.hierarchical_diff(*shared(a, b))


def ratio(a: dict, b: dict) -> dict:
    """Accuracy of a / accuracy of b, paired by (seed, question) on the seeds both ran."""
    return intervals.hierarchical_ratio(*shared(a, b), "the reference arm answers nothing correctly: no ratio")


def budget(evals: dict, arm: str) -> dict:
    """Average visual tokens per layer (all layers, zero-token ones included) as counted in every
    seed's evaluation forward, the compression 1 - average / image tokens, and the first layer from
    which no visual token is left (an exit, declared or implicit; None when the last layer has some)."""
    avgs = [m["visual_tokens_avg"] for m in evals[arm].values()]
    first = next(iter(evals[arm].values()))
    full, per_layer = first["visual_tokens_full"], first["visual_tokens_per_layer"]
    return {"average": statistics.fmean(avgs), "compression": 1 - statistics.fmean(avgs) / full,
            "per_layer": per_layer, "full": full, "none_from": none_from(per_layer)}


def none_from(per_layer: list[int]) -> int | None:
    """The first layer from which every later layer has no visual token, after some layer had them."""
    last = max((i for i, v in enumerate(per_layer) if v), default=None)
    return None if last is None or last == len(per_layer) - 1 else last + 1


def matched(a: float, b: float) -> bool:
    return abs(a / b - 1) <= MATCH_TOLERANCE if b else a == b


def compression(evals: dict, arm: str) -> dict:
    b = budget(evals, arm)
    why = (f"the schedule fixes it: {b['average']:.2f} of {b['full']} visual tokens per layer on average, counted "
           f"in the forward of {len(evals[arm])} seeds' evaluations")
    return intervals.by_design(b["compression"], why)


def visual_share(evals: dict, arm: str) -> dict:
    """Share of the vanilla sequence that is visual tokens (<bos> and the question's tokens are the rest)."""
    m = next(iter(evals[arm].values()))
    share = m["visual_tokens_full"] / (m["visual_tokens_full"] + m["text_tokens_mean"])
    return intervals.by_design(share, f"{m['visual_tokens_full']} visual tokens beside {m['text_tokens_mean']:.1f} "
                               "text tokens (<bos> + question) on average")


def speed_effects(speed: dict) -> dict:
    """Per timed path (train step, prefill): the A/A control (vanilla against an identical copy) and
    each arm's speedup over vanilla, its interval widened by the factor the A/A interval leaves 1 by,
    and the analytic (recorded GEMM) FLOP ratios."""
    out = {}
    for what, by_name in speed["pairs"].items():
        aa = intervals.speedup(by_name[AA])
        fl = speed["flops"][what]
        base = max(fl.values())  # vanilla spends the most
        out[what] = {"control": aa,
                     "arms": {n: {**intervals.against_aa(intervals.speedup(p), aa), "flop_ratio": base / fl[n]}
                              for n, p in by_name.items() if n != AA}}
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
    """HiDrop - PDrop accuracy at each budget of the sweep (paired), with both measured budgets and
    the layer from which PDrop keeps no visual token (its stages can round to zero: an implicit exit)."""
    rows = []
    for h, p in pairs:
        bh, bp = budget(evals, h), budget(evals, p)
        rows.append({"hidrop": h, "pdrop": p, "budget_hidrop": bh["average"], "budget_pdrop": bp["average"],
                     "pdrop_none_from": bp["none_from"], "matched": matched(bp["average"], bh["average"]),
                     "accuracy_hidrop": intervals.mean_ci([m["accuracy"] for m in evals[h].values()]),
                     "accuracy_pdrop": intervals.mean_ci([m["accuracy"] for m in evals[p].values()]),
                     "difference": difference(per_item(evals, h), per_item(evals, p))})
    return rows


def every_stage(rows: list[dict]) -> dict | None:
    """The sweep point of smallest budget where PDrop keeps visual tokens in every stage (no implicit
    exit): reported beside the headline when the headline's PDrop rounds its last stages to zero."""
    full = [r for r in rows if r["pdrop_none_from"] is None]
    return min(full, key=lambda r: r["budget_pdrop"]) if full else None


def relabel(aa: dict, seeds: list[int]) -> dict:
    """The A/A seeds' items under the main seeds' labels, paired by position (seed i with A/A seed i)."""
    if len(aa) != len(seeds) or set(aa) & set(seeds):
        raise ValueError(f"the seed A/A needs as many seeds as the main set, disjoint from it: {sorted(aa)} vs {seeds}")
    return {s: aa[a] for s, a in zip(seeds, sorted(aa))}


def seed_controls(aa_evals: dict, evals: dict, vanilla: str) -> dict:
    """Vanilla on the A/A seeds against vanilla on the main seeds, through the claims' difference (H3's,
    and H1's regime) and ratio (H1's check): each must decide no effect."""
    base = per_item(evals, vanilla)
    aa = relabel(per_item(aa_evals, vanilla), sorted(base))
    what = (f"vanilla fine-tuned on seeds {sorted(aa_evals[vanilla])} against vanilla on seeds {sorted(base)}, "
            "paired by position and question")
    return {"seed_aa": seed_control(difference(aa, base), what + ": accuracy difference"),
            "seed_aa_ratio": seed_control(ratio(aa, base), what + ": accuracy ratio", null=1.0)}


def gain_share(h: dict, v: dict, b: dict) -> dict:
    """(HiDrop - blind) / (vanilla - blind): the share of the image's gain HiDrop keeps, paired by
    (seed, question), delta-method crossed interval (intervals.hierarchical_ratio)."""
    return intervals.hierarchical_ratio({s: h[s] - b[s] for s in h}, {s: v[s] - b[s] for s in v},
                                        "vanilla does not beat blind: the image adds nothing to share")


def decide(evals: dict, speed: dict, roles: dict, sweep_pairs: list[list[str]], layers: dict | None = None,
           aa_evals: dict | None = None, training: dict | None = None) -> dict:
    """evals: arm -> seed -> evaluate metrics (aa_evals: the same for the vanilla arm on the A/A seeds).
    h1: HiDrop's compression (by design), accuracy relative to vanilla, the image's gain it keeps,
    vanilla minus blind (the regime); h2: training-step speedup of HiDrop over vanilla (interleaved
    pairs, against the A/A); h3: HiDrop minus PDrop at HiDrop's budget, the sweep and the ablations;
    controls: the timing A/As and the seed A/A. `training`: the steps with every token and at the
    arm's schedule (pretrain, finetune params)."""
    arm = lambda role: per_item(evals, roles[role])  # noqa: E731
    sp = speed_effects(speed)
    hb = budget(evals, roles["hidrop"])["average"]
    ablations = {n: {"difference": difference(arm("hidrop"), per_item(evals, roles[n])),
                     "budget": budget(evals, roles[n])["average"], "budget_hidrop": hb,
                     "matched": matched(budget(evals, roles[n])["average"], hb)}
                 for n in ("pdrop_persistent", "no_late", "no_exit", "linear") if roles.get(n) in evals}
    rows = sweep(evals, sweep_pairs)
    pb = budget(evals, roles["pdrop"])
    controls = {f"timing_{what}": timing_control(cell["control"], f"{what}: vanilla against an identical copy, "
                                                 "interleaved pairs") for what, cell in sp.items()}
    if aa_evals:
        controls.update(seed_controls(aa_evals, evals, roles["vanilla"]))
    steps = training or {}
    return {
        "seeds": sorted(evals[roles["vanilla"]]),
        "fewer_seeds": {n: sorted(e) for n, e in evals.items() if sorted(e) != sorted(evals[roles["vanilla"]])},
        "aa_seeds": sorted((aa_evals or {}).get(roles["vanilla"], {})),
        "arms": arm_rows(evals, roles["vanilla"]),
        "training": {**steps, "share_at_schedule": steps["finetune"] / (steps["pretrain"] + steps["finetune"])}
        if steps else {},
        "h1": {"compression": compression(evals, roles["hidrop"]),
               "accuracy_ratio": ratio(arm("hidrop"), arm("vanilla")),
               "image_gain_share": gain_share(arm("hidrop"), arm("vanilla"), arm("blind")),
               "vanilla_minus_blind": difference(arm("vanilla"), arm("blind"))},
        "h2": {"train_speedup": sp["train"]["arms"][roles["hidrop"]], "control": sp["train"]["control"],
               "flop_ratio": sp["train"]["arms"][roles["hidrop"]]["flop_ratio"],
               "visual_share": visual_share(evals, roles["vanilla"])},
        "h3": {"hidrop_minus_pdrop": difference(arm("hidrop"), arm("pdrop")),
               "budget_hidrop": hb, "budget_pdrop": pb["average"], "pdrop_none_from": pb["none_from"],
               "budget_ratio": intervals.by_design(pb["average"] / hb, f"PDrop {pb['average']:.2f} / HiDrop {hb:.2f} "
                                                   "visual tokens per layer, counted in the forward"),
               "hidrop_minus": ablations, "sweep": rows, "every_stage": every_stage(rows)},
        "speed": sp,
        "controls": controls,
        "layers": (layers or {}).get("mean", {}),
    }


# ---------------------------------------------------------------- report tables


def seeds_section(m: dict) -> list[str]:
    lines = ["## What the seeds vary", "",
             "- `pretrain` (every weight, every visual token, captions + questions): one run with the workflow "
             "seed, shared by every arm and seed.",
             f"- `finetune/{{arm}}/seed{{seed}}` and `evaluate/{{arm}}/seed{{seed}}`: seeds {m['seeds']}; the seed "
             "draws the fine-tuning batches, the same for every arm of one seed."]
    if m["fewer_seeds"]:
        lines.append("- Arms no claim reads (ablations, the sweep beyond the headline budget) run on fewer seeds, "
                     "compared with HiDrop on the seeds both ran: " + ", ".join(f"{n} {s}" for n, s in
                                                                               m["fewer_seeds"].items()) + ".")
    if m["aa_seeds"]:
        lines.append(f"- Seed A/A control: the vanilla arm again on seeds {m['aa_seeds']}, compared with vanilla "
                     "through the claims' own difference and ratio (A/A seed i paired with seed i).")
    t = m.get("training")
    if t:
        lines.append(f"- Steps: {t['pretrain']} pre-training steps with every visual token (shared), then "
                     f"{t['finetune']} fine-tuning steps at each arm's schedule: HiDrop trains "
                     f"{t['share_at_schedule']:.0%} of its steps at its dropping schedule.")
    return lines + [
        "- The test questions are fixed, so arms are paired by (seed, question); intervals are crossed seeds x "
        "questions (a Student-t seed part plus the shared question part, repro.report.intervals.hierarchical). "
        "`CI questions only` holds the seeds fixed.",
        "- `speed` times random-init models (weights do not change the cost); `layers` profiles the vanilla "
        "arm of every seed.", ""]


def effects_section(m: dict) -> list[str]:
    h1, h3 = m["h1"], m["h3"]
    rows = [("H1 accuracy HiDrop / vanilla", h1["accuracy_ratio"]),
            ("H1 share of the image's gain HiDrop keeps, (HiDrop - blind) / (vanilla - blind)", h1["image_gain_share"]),
            ("H1 regime: accuracy vanilla - blind", h1["vanilla_minus_blind"]),
            ("H3 accuracy HiDrop - PDrop (HiDrop's budget)", h3["hidrop_minus_pdrop"])]
    full = h3["every_stage"]
    if full:
        rows.append((f"H3 at {full['budget_hidrop']:.1f} / {full['budget_pdrop']:.1f} tokens, PDrop keeping tokens in "
                     f"every stage: {full['hidrop']} - {full['pdrop']}", full["difference"]))
    for n, a in h3["hidrop_minus"].items():
        tag = "matched budget" if a["matched"] else f"UNMATCHED: {a['budget']:.1f} vs {a['budget_hidrop']:.1f} tokens"
        rows.append((f"HiDrop - {n} ({tag})", a["difference"]))
    lines = ["## Claim effects (paired by seed and question)", ""]
    lines += seeds_items_table(rows, "questions")
    exit_note = ("keeps visual tokens to the last layer" if h3["pdrop_none_from"] is None else
                 f"rounds its stages from layer {h3['pdrop_none_from']} on to zero tokens (an implicit exit)")
    lines += ["", f"- H1 compression (by design, counted in the forward): {h1['compression']['value']:.1%} "
              f"({h1['compression']['note']}).",
              f"- H3 budgets, measured: HiDrop {h3['budget_hidrop']:.2f}, PDrop {h3['budget_pdrop']:.2f} visual "
              "tokens per layer on average (PDrop's lambda is the smallest that spends at least HiDrop's budget); "
              f"PDrop at this budget {exit_note}.", ""]
    return lines


def arms_section(m: dict) -> list[str]:
    kinds = list(next(iter(m["arms"].values()))["by_kind"])
    lines = ["## Arms (test questions; means over seeds)", "",
             "| arm | accuracy mean ± std | / vanilla [95% CI] | " + " | ".join(kinds)
             + " | avg visual tokens / layer | compression | visual tokens per layer | none from layer "
             "| prefill FLOPs / vanilla |",
             "|---|---|---|" + "---|" * len(kinds) + "---|---|---|---|---|"]
    for name, r in m["arms"].items():
        a = r["accuracy"]
        lines.append(f"| {name} | {a['mean']:.3f} ± {a['std']:.3f} | {fmt_ci(r['ratio_to_vanilla'])} | "
                     + " | ".join(f"{r['by_kind'][k]:.3f}" for k in kinds)
                     + f" | {r['average']:.2f} | {r['compression']:.1%} | "
                     + " ".join(str(v) for v in r["per_layer"])
                     + f" | {'-' if r['none_from'] is None else r['none_from']} | {r['flops_relative']:.3f} |")
    return lines + [""]


def sweep_section(m: dict) -> list[str]:
    lines = ["## Budget sweep: HiDrop and PDrop at each budget (H3 reads the first row)", "",
             "| HiDrop arm | PDrop arm | avg visual tokens HiDrop / PDrop | PDrop has no token from layer | "
             "accuracy HiDrop | accuracy PDrop | HiDrop - PDrop [95% CI] |", "|---|---|---|---|---|---|---|"]
    for r in m["h3"]["sweep"]:
        lines.append(f"| {r['hidrop']} | {r['pdrop']} | {r['budget_hidrop']:.2f} / {r['budget_pdrop']:.2f} | "
                     f"{'- (tokens in every stage)' if r['pdrop_none_from'] is None else r['pdrop_none_from']} | "
                     f"{fmt_ci(r['accuracy_hidrop'])} | {fmt_ci(r['accuracy_pdrop'])} | {fmt_ci(r['difference'])} |")
    return lines + [""]


def speed_section(m: dict) -> list[str]:
    lines = ["## Speed: interleaved pairs with vanilla (same per-layer loop)", "",
             "Speedup = vanilla time / arm time per pair; median over pairs with its 95% interval. FLOP ratio: "
             "the language model's GEMM FLOPs recorded in one forward (the vision side, the same for both, "
             "is not counted). Each arm's interval is widened by the factor its path's A/A interval leaves 1 by "
             "(the unwidened interval beside it).", "",
             "| path | arm | ms (median) | speedup [95% CI] | unwidened | FLOP ratio | pairs |",
             "|---|---|---|---|---|---|---|"]
    for what, cell in m["speed"].items():
        c = cell["control"]
        lines.append(f"| {what} | A/A control | {1000 * c['seconds']:.1f} | {fmt_ci(c)} | | 1 | {c['n']} |")
        for name, e in cell["arms"].items():
            raw = e.get("ci_unwidened", e["ci"])
            lines.append(f"| {what} | {name} | {1000 * e['seconds']:.1f} | {fmt_ci(e)} | [{fmt_number(raw[0], '.3f')}, {fmt_number(raw[1], '.3f')}] | "
                         f"{e['flop_ratio']:.2f} | {e['n']} |")
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


def per_seed_section(evals: dict, seeds: list[int], aa_evals: dict | None = None) -> list[str]:
    """Accuracy of every arm per seed; the A/A arm's seeds under the main seed they are paired with."""
    lines = ["## Accuracy per seed", "", "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|" + "---|" * len(seeds)]
    for name, by_seed in evals.items():
        lines.append(f"| {name} | " + " | ".join(f"{by_seed[s]['accuracy']:.3f}" if s in by_seed else "-"
                                                 for s in seeds) + " |")
    for name, by_seed in (aa_evals or {}).items():
        lines.append(f"| {name}, A/A seeds | " + " | ".join(f"{by_seed[a]['accuracy']:.3f} (seed {a})"
                                                             for a in sorted(by_seed)) + " |")
    return lines + [""]


def report_tables(m: dict, evals: dict, design: list[str], aa_evals: dict | None = None) -> str:
    """Markdown: the design, seeds, claim effects with both intervals, arms, sweep, speed, layers."""
    lines = (design + seeds_section(m) + effects_section(m) + arms_section(m) + sweep_section(m)
             + speed_section(m) + layers_section(m) + per_seed_section(evals, m["seeds"], aa_evals))
    return "\n".join(lines) + "\n"
