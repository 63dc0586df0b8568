"""The numbers that decide U1-U3, from the evaluate and latency metrics, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. AUC
differences come with a paired bootstrap over test sequences (the same sequences for every arm),
which says how much of a difference one seed and this many sequences can resolve.
"""
from __future__ import annotations

import numpy as np
from repro.report.verdicts import fmt_number

SCORES = ("auc", "precision", "norm_precision")


def paired_bootstrap(a: list[float], b: list[float], samples: int, seed: int) -> dict:
    """Mean of a - b over sequences and its 95% percentile interval under resampled sequences."""
    d = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (samples, len(d)))].mean(1)
    return {"mean": float(d.mean()), "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]}


def variant_rows(evals: dict, latency: dict) -> dict:
    """Per variant and mode (finetuned / training_free): scores, relative AUC, tokens, MACs, latency."""
    base = evals["baseline"]["finetuned"]
    rows = {}
    for name, ev in evals.items():
        lat = latency.get(name, {})
        for mode in ("finetuned", "training_free"):
            if mode not in ev:
                continue
            m = ev[mode]
            rows[f"{name}/{mode}"] = {
                "variant": name, "mode": mode, **{k: m[k] for k in SCORES},
                "relative_auc": m["auc"] / base["auc"] if base["auc"] > 0 else None,
                "tokens_pruned_final": m["tokens_pruned"]["final"],
                "tokens_pruned_block_mean": m["tokens_pruned"]["block_mean"],
                "macs": m["macs"]["total"], "macs_relative": m["macs"]["total"] / base["macs"]["total"],
                "template_updates": m["template_updates"],
                "latency": lat}
    return rows


def decide(evals: dict, latency: dict, roles: dict, bootstrap: int, seed: int) -> dict:
    """u1: unified pruning's share of tokens removed and relative AUC; u2: unified vs search-only at
    an equal token budget; u3: token-type-aware vs unaware STE. All fine-tuned."""
    rows = variant_rows(evals, latency)
    ft = lambda role: evals[roles[role]]["finetuned"]  # noqa: E731
    uni, so, unaware = ft("unified"), ft("search_only"), ft("unaware")
    per = lambda m: m["per_sequence_auc"]  # noqa: E731
    budget = lambda m: float(np.mean([b["out"] for b in m["token_trace"]]))  # noqa: E731
    return {
        "variants": rows,
        "u1": {"tokens_pruned_final": uni["tokens_pruned"]["final"],
               "tokens_pruned_block_mean": uni["tokens_pruned"]["block_mean"],
               "relative_auc": rows[f"{roles['unified']}/finetuned"]["relative_auc"],
               "relative_auc_training_free": rows.get(f"{roles['unified']}/training_free", {}).get("relative_auc"),
               "auc_minus_baseline": paired_bootstrap(per(uni), per(ft("baseline")), bootstrap, seed)},
        "u2": {"unified_auc": uni["auc"], "search_only_auc": so["auc"],
               "unified_minus_search_only": uni["auc"] - so["auc"],
               "bootstrap": paired_bootstrap(per(uni), per(so), bootstrap, seed),
               "tokens_per_block_unified": budget(uni), "tokens_per_block_search_only": budget(so),
               "macs_unified": uni["macs"]["total"], "macs_search_only": so["macs"]["total"]},
        "u3": {"aware_auc": uni["auc"], "unaware_auc": unaware["auc"],
               "aware_minus_unaware": uni["auc"] - unaware["auc"],
               "bootstrap": paired_bootstrap(per(uni), per(unaware), bootstrap, seed)},
    }



def report_tables(m: dict, keep: dict) -> str:
    """Markdown: every variant and mode, CPU latency per variant, then the three comparisons."""
    lines = ["## Variants (test sequences tracked end to end; AUC relative to the fine-tuned baseline)", "",
             "| variant | mode | keep ratios (CE/DTE/STE) | AUC | rel. AUC | P@20px | P_norm | tokens pruned "
             "(final / block mean) | MACs (M) | rel. MACs | template updates |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in m["variants"].values():
        k = keep.get(r["variant"], {})
        ratios = "/".join(fmt_number(k.get(mod), ".2f") if mod in k else "-" for mod in ("ce", "dte", "ste"))
        lines.append(f"| {r['variant']} | {r['mode']} | {ratios} | {r['auc']:.3f} | {fmt_number(r['relative_auc'], '.3f')} | "
                     f"{r['precision']:.3f} | {r['norm_precision']:.3f} | {r['tokens_pruned_final']:.1%} / "
                     f"{r['tokens_pruned_block_mean']:.1%} | {r['macs'] / 1e6:.1f} | {r['macs_relative']:.3f} | "
                     f"{r['template_updates']} |")
    lat = {r["variant"]: r["latency"] for r in m["variants"].values() if r["mode"] == "finetuned"}
    batches = sorted({b for v in lat.values() for b in v}, key=lambda b: int(b[1:]))
    lines += ["", "## CPU latency of one tracking step (backbone + head; median of round medians, and the "
              "speedup of the fastest call, which other processes disturb least)", "",
              "| variant | " + " | ".join(f"ms/frame {b} | speedup {b} | speedup {b} (fastest)" for b in batches)
              + " |", "|---|" + "---|---|---|" * len(batches)]
    for name, v in lat.items():
        cells = [f"{v[b]['ms_per_frame']:.2f} | {v[b]['speedup']:.2f} | {fmt_number(v[b].get('speedup_of_min'), '.2f')}"
                 if b in v else "n/a | n/a | n/a" for b in batches]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    u1, u2, u3 = m["u1"], m["u2"], m["u3"]
    ci = lambda b: f"{b['mean']:+.3f} (95% CI {b['ci95'][0]:+.3f} to {b['ci95'][1]:+.3f})"  # noqa: E731
    lines += ["", "## Comparisons (paired bootstrap over test sequences)", "",
              f"- U1: unified pruning removes {u1['tokens_pruned_final']:.1%} of vision tokens after the last "
              f"block ({u1['tokens_pruned_block_mean']:.1%} averaged over blocks) and keeps "
              f"{fmt_number(u1['relative_auc'], '.3f')} of the baseline AUC "
              f"(training-free: {fmt_number(u1['relative_auc_training_free'], '.3f')}); "
              f"AUC minus baseline {ci(u1['auc_minus_baseline'])}.",
              f"- U2: at an equal token budget ({u2['tokens_per_block_unified']:.1f} vs "
              f"{u2['tokens_per_block_search_only']:.1f} tokens per block; MACs {u2['macs_unified'] / 1e6:.1f}M vs "
              f"{u2['macs_search_only'] / 1e6:.1f}M), unified AUC {u2['unified_auc']:.3f} vs search-only "
              f"{u2['search_only_auc']:.3f}: {ci(u2['bootstrap'])}.",
              f"- U3: token-type-aware STE AUC {u3['aware_auc']:.3f} vs unaware {u3['unaware_auc']:.3f}: "
              f"{ci(u3['bootstrap'])}."]
    return "\n".join(lines) + "\n"
