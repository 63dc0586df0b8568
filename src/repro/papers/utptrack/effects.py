"""The effects that decide U1-U3, from the evaluate jobs (one per variant and seed) and the latency
pairs, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. Every
variant is fine-tuned and evaluated once per seed on the same test sequences, so two arms are
compared per (seed, sequence) item: AUC differences are paired and hierarchical (seeds resampled,
then sequences within each seed; repro.report.intervals.hierarchical). Tokens pruned is fixed by
the configuration: it is measured in the forward and labelled "by design". Speedups come from the
interleaved timing pairs, with the A/A control of their batch size.
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.core import timing
from repro.report import intervals
from repro.report.verdicts import fmt_number

SCORES = ("auc", "precision", "norm_precision")
MODES = ("finetuned", "training_free")


def per_sequence(evals: dict, variant: str, mode: str = "finetuned") -> dict[int, np.ndarray]:
    """seed -> the per-sequence AUCs of one variant and mode."""
    return {s: np.asarray(m[mode]["per_sequence_auc"], float) for s, m in sorted(evals[variant].items())}


def paired(a: dict, b: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two arms' per-sequence AUCs seed by seed; they must share seeds and sequences."""
    if list(a) != list(b) or any(a[s].shape != b[s].shape for s in a):
        raise ValueError(f"arms are not paired: seeds {list(a)} vs {list(b)}, sequences per seed "
                         f"{[x.size for x in a.values()]} vs {[y.size for y in b.values()]}")
    return [(a[s], b[s]) for s in a]


def difference(a: dict, b: dict) -> dict:
    """Mean AUC of a minus b over seeds x sequences, paired by (seed, sequence)."""
    return intervals.hierarchical([x - y for x, y in paired(a, b)])


def ratio(a: dict, b: dict) -> dict:
    """R = mean AUC of a / mean AUC of b (means over seeds of each seed's sequence mean), paired by
    (seed, sequence). Its interval is the hierarchical bootstrap of the linearised ratio (delta
    method): per item z = R + (a - R b) / mean(b), whose mean is R exactly and whose resampled
    means move as a resampled ratio of means does, to first order."""
    pairs = paired(a, b)
    den = float(np.mean([y.mean() for _, y in pairs]))
    if den <= 0:
        return intervals.unmeasured("the baseline's AUC is 0 on every sequence: no ratio")
    r = float(np.mean([x.mean() for x, _ in pairs])) / den
    return intervals.hierarchical([r + (x - r * y) / den for x, y in pairs])


def _by_seed(evals: dict, variant: str, mode: str, get) -> list:
    return [get(evals[variant][s][mode]) for s in sorted(evals[variant])]


def tokens_by_design(evals: dict, variant: str, key: str) -> dict:
    """A tokens-pruned figure of a variant's fine-tuned runs, measured in the forward of every seed's
    evaluation (the same in each: keep ratios and blocks fix it)."""
    values = _by_seed(evals, variant, "finetuned", lambda m: m["tokens_pruned"][key])
    why = (f"keep ratios and pruning blocks fix the token counts; measured in the forward of {len(values)} "
           "seeds' tracking runs")
    return {**intervals.by_design(statistics.fmean(values), why), "samples": values}


def variant_rows(evals: dict, baseline: str) -> dict:
    """Per variant and mode: scores over seeds, AUC relative to the fine-tuned baseline (paired
    ratio), measured tokens pruned, MACs and template updates."""
    base = per_sequence(evals, baseline)
    base_macs = statistics.fmean(_by_seed(evals, baseline, "finetuned", lambda m: m["macs"]["total"]))
    rows = {}
    for name, by_seed in evals.items():
        for mode in MODES:
            if mode not in next(iter(by_seed.values())):
                continue
            mean = lambda get: statistics.fmean(_by_seed(evals, name, mode, get))  # noqa: E731
            rows[f"{name}/{mode}"] = {
                "variant": name, "mode": mode,
                "auc": intervals.spread(_by_seed(evals, name, mode, lambda m: m["auc"])),
                **{k: mean(lambda m: m[k]) for k in SCORES[1:]},
                "relative_auc": ratio(per_sequence(evals, name, mode), base),
                "tokens_pruned": {k: mean(lambda m: m["tokens_pruned"][k]) for k in ("final", "block_mean")},
                "macs": mean(lambda m: m["macs"]["total"]),
                "macs_relative": mean(lambda m: m["macs"]["total"]) / base_macs,
                "template_updates": mean(lambda m: m["template_updates"])}
    return rows


def latency_effects(pairs: dict) -> dict:
    """Per batch size: the A/A control and every variant's speedup over the un-pruned tracker
    (median ratio over interleaved pairs), marked when that batch size's control was unstable."""
    out = {}
    for batch, by_name in pairs.items():
        ctrl = timing.control(intervals.speedup(by_name[timing.AA]))
        out[batch] = {"control": ctrl, "variants": {n: timing.mark_unstable(intervals.speedup(p), ctrl)
                                                    for n, p in by_name.items() if n != timing.AA}}
    return out


def decide(evals: dict, latency: dict, roles: dict) -> dict:
    """evals: variant -> seed -> evaluate metrics. u1: UTPTrack's tokens pruned (by design) and AUC
    relative to the fine-tuned baseline; u2: unified minus search-only AUC at an equal token
    budget; u3: token-type-aware minus unaware AUC. All fine-tuned, paired over seeds x sequences."""
    uni, base, so = roles["unified"], roles["baseline"], roles["search_only"]
    seeds = sorted(evals[base])
    arm = lambda role: per_sequence(evals, roles[role])  # noqa: E731
    first = lambda name: evals[name][seeds[0]]["finetuned"]  # noqa: E731
    per_block = lambda name: statistics.fmean(b["in"] for b in first(name)["token_trace"])  # noqa: E731
    return {
        "seeds": seeds,
        "variants": variant_rows(evals, base),
        "u1": {"tokens_pruned_block_mean": tokens_by_design(evals, uni, "block_mean"),
               "tokens_pruned_final": tokens_by_design(evals, uni, "final"),
               "relative_auc": ratio(arm("unified"), arm("baseline")),
               "relative_auc_training_free": ratio(per_sequence(evals, uni, "training_free"), arm("baseline")),
               "tokens_per_block": first(uni)["token_trace"]},
        "u2": {"unified_minus_search_only": difference(arm("unified"), arm("search_only")),
               "tokens_per_block_unified": per_block(uni), "tokens_per_block_search_only": per_block(so),
               "macs_unified": first(uni)["macs"]["total"], "macs_search_only": first(so)["macs"]["total"]},
        "u3": {"aware_minus_unaware": difference(arm("unified"), arm("unaware"))},
        "latency": latency_effects(latency["pairs"]),
    }


# ---------------------------------------------------------------- report tables


def _ci(e: dict, spec: str = ".3f") -> str:
    lo, hi = e["ci"]
    if e["value"] is None:
        return f"n/a ({e.get('reason', 'not measured')})"
    return f"{e['value']:{spec}} [{fmt_number(lo, spec)}, {fmt_number(hi, spec)}]"


def seeds_section(seeds: list[int]) -> list[str]:
    return ["## What the seeds vary", "",
             "- `train` (pre-training the un-pruned tracker): one run with the workflow seed, shared by every "
             "variant and seed.",
             f"- `finetune/{{variant}}/seed{{seed}}` and `evaluate/{{variant}}/seed{{seed}}`: seeds {seeds}; the "
             "seed draws the fine-tuning batches (the same for every variant of one seed). The training-free mode "
             "of a variant prunes the un-pruned baseline fine-tuned with the same seed.",
             "- Test sequences are fixed, so arms are paired by (seed, sequence); intervals resample seeds, then "
             "sequences within each seed (95%, percentile bootstrap). `CI sequences only` holds the seeds fixed.", ""]


def effects_section(m: dict) -> list[str]:
    u1, u2, u3 = m["u1"], m["u2"], m["u3"]
    rows = [("U1 relative AUC (UTPTrack / fine-tuned baseline)", u1["relative_auc"]),
            ("U1 relative AUC, training-free UTPTrack", u1["relative_auc_training_free"]),
            ("U2 unified - search-only AUC", u2["unified_minus_search_only"]),
            ("U3 token-type aware - unaware AUC", u3["aware_minus_unaware"])]
    lines = ["## Claim effects (fine-tuned unless noted; paired by seed and sequence)", "",
             "| effect | value [95% CI, seeds x sequences] | 95% CI, sequences only | seeds | items |",
             "|---|---|---|---|---|"]
    for label, e in rows:
        items = e.get("ci_items", [None, None])
        lines.append(f"| {label} | {_ci(e)} | [{fmt_number(items[0], '.3f')}, {fmt_number(items[1], '.3f')}] | "
                     f"{e['n']} | {e.get('n_items', 'n/a')} |")
    trace = u1["tokens_per_block"]
    lines += ["", f"- U1 tokens pruned, measured in the forward (by design): block mean "
              f"{u1['tokens_pruned_block_mean']['value']:.1%} (the claim's figure: tokens each block read, so pruning "
              f"in the last block does not count); after the last block {u1['tokens_pruned_final']['value']:.1%} "
              f"(the figure the paper's 65.4% compares with).",
              "- UTPTrack's tokens per block (attention in -> MLP in): "
              + ", ".join(f"{b['in']:g}->{b['out']:g}" for b in trace) + ".",
              f"- U2 budget: {u2['tokens_per_block_unified']:.1f} (unified) vs {u2['tokens_per_block_search_only']:.1f}"
              f" (search-only) tokens read per block; backbone + head MACs {u2['macs_unified'] / 1e6:.1f}M vs "
              f"{u2['macs_search_only'] / 1e6:.1f}M.", ""]
    return lines


def variants_section(m: dict, keep: dict) -> list[str]:
    lines = ["## Variants (test sequences tracked end to end; means over seeds)", "",
             "| variant | mode | keep (CE/DTE/STE) | AUC mean ± std over seeds | rel. AUC [95% CI] | P@20px | "
             "P_norm | tokens pruned, block mean / final (measured) | MACs (M) | rel. MACs | template updates |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in m["variants"].values():
        k = keep.get(r["variant"], {})
        ratios = "/".join(fmt_number(k.get(mod), ".2f") if mod in k else "-" for mod in ("ce", "dte", "ste"))
        a, t = r["auc"], r["tokens_pruned"]
        lines.append(f"| {r['variant']} | {r['mode']} | {ratios} | {a['mean']:.3f} ± {a['std']:.3f} (n={a['n']}) | "
                     f"{_ci(r['relative_auc'])} | {r['precision']:.3f} | {r['norm_precision']:.3f} | "
                     f"{t['block_mean']:.1%} / {t['final']:.1%} | {r['macs'] / 1e6:.1f} | {r['macs_relative']:.3f} | "
                     f"{r['template_updates']:.1f} |")
    return lines + [""]


def per_seed_section(evals: dict, seeds: list[int]) -> list[str]:
    lines = ["## Fine-tuned AUC per seed", "", "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|" + "---|" * len(seeds)]
    for name, by_seed in evals.items():
        cells = [f"{by_seed[s]['finetuned']['auc']:.3f}" for s in seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def latency_section(lat: dict) -> list[str]:
    lines = ["## Latency of one tracking step (backbone + head), interleaved with the un-pruned tracker", "",
             "Speedup = un-pruned time / variant time per pair; median over pairs with its 95% interval. No claim "
             "check reads latency.", "",
             "| batch | variant | ms/frame (median) | speedup [95% CI] | pairs | timing |", "|---|---|---|---|---|---|"]
    for batch, cell in lat.items():
        batch_size = int(batch[1:])
        ctrl = cell["control"]
        lines.append(f"| {batch_size} | A/A control | {1000 * ctrl['seconds'] / batch_size:.2f} | {_ci(ctrl)} | "
                     f"{ctrl['n']} | {'stable' if ctrl['stable'] else 'UNSTABLE'} |")
        for name, e in cell["variants"].items():
            lines.append(f"| {batch_size} | {name} | {1000 * e['seconds'] / batch_size:.2f} | {_ci(e)} | {e['n']} | "
                         f"{'unstable: ' + e['unstable'] if e.get('unstable') else 'stable'} |")
    return lines + [""]


def report_tables(m: dict, evals: dict, keep: dict) -> str:
    """Markdown: seeds, claim effects with both intervals, every variant and mode, AUC per seed,
    latency with intervals."""
    lines = (seeds_section(m["seeds"]) + effects_section(m) + variants_section(m, keep)
             + per_seed_section(evals, m["seeds"]) + latency_section(m["latency"]))
    return "\n".join(lines) + "\n"

