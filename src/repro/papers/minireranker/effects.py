"""The claims' effects from the jobs' metrics, and the report's tables.

Quality effects are paired over (seed, test query): every format and rung reranks the same
first-stage candidates of the same test queries with each seed, so the intervals are hierarchical
(seeds, then queries within seeds; repro.report.intervals.hierarchical) over per-query differences.
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.core.timing import AA, control, mark_unstable
from repro.report import intervals

METRICS = ("ndcg10", "mrr", "hit1")


def per_query(runs: dict, split: str = "test", metric: str = "ndcg10") -> dict:
    """{seed: array over the split's queries (sorted by id)} of one arm's runs ({seed: metrics})."""
    out = {}
    for seed, m in sorted(runs.items()):
        rows = m[split]["per_query"]
        out[seed] = np.array([rows[q][metric] for q in sorted(rows, key=int)])
    return out


difference = intervals.hierarchical_diff  # {seed: items} per arm, paired by (seed, item)


def ratio(a: dict, b: dict) -> dict:
    """Mean NDCG of a / mean NDCG of b, paired by (seed, query)."""
    return intervals.hierarchical_ratio(a, b, "the dense reranker scores 0 on every query: no ratio")


def choose_keep(ladder: dict, rungs: dict, share: float) -> tuple[str, dict]:
    """The full miniReranker's pruning share r, on validation: among the band rung (r = 1) and the
    pruned rungs, the smallest r whose validation NDCG@10 (mean over seeds) keeps `share` of the
    band rung's."""
    val = {n: statistics.fmean(m["val"]["ndcg10"] for m in ladder[n].values()) for n in ladder}
    banded = [n for n in rungs if rungs[n].get("band")]
    base = next(n for n in banded if rungs[n].get("keep", 1.0) == 1.0)
    ok = [n for n in banded if val[n] >= share * val[base]]
    return min(ok, key=lambda n: rungs[n].get("keep", 1.0)), val


def time_share(pair_times: dict) -> dict:
    """Variant time / dense time: the inverse of the median speedup, its interval inverted."""
    s = intervals.speedup(pair_times)
    lo, hi = s["ci"]
    inv = lambda x: None if x is None else 1 / x  # noqa: E731
    return {**intervals.effect(inv(s["value"]), inv(hi), inv(lo), s["n"], "pairs"),
            "seconds": s["seconds"], "dense_seconds": s["baseline_seconds"]}


def quality_window(dense: float, embedder: float, window: tuple[float, float] = (0.5, 0.9)) -> dict:
    """The spec's precondition for deciding quality: the dense reranker's mean test NDCG@10 beats the
    first stage's and lies in `window` (no ceiling, no floor). `unmet` says why when it fails."""
    lo, hi = window
    why = [f"dense NDCG@10 {dense:.3f} <= embedder {embedder:.3f}"] if dense <= embedder else []
    why += [] if lo <= dense <= hi else [f"dense NDCG@10 {dense:.3f} outside [{lo}, {hi}]"]
    return {"dense_ndcg10": dense, "embedder_ndcg10": embedder, "dense_beats_embedder": dense > embedder,
            f"dense_between_{lo}_and_{hi}": lo <= dense <= hi, "unmet": "; ".join(why) or None}


def decide(formats: dict, ladder: dict, selection: dict, cost: dict, embed: dict, rungs: dict, share: float) -> dict:
    """formats / ladder: {name: {seed: metrics}}; the claims' effects and the tables' numbers."""
    dense = per_query(formats["vision_first"])
    others = {n: per_query(formats[n]) for n in ("query_first", "document_first")}
    means = {n: float(np.mean([x.mean() for x in v.values()])) for n, v in others.items()}
    best = max(means, key=means.get)
    m1 = {"vision_first_minus_best_other": {**difference(dense, others[best]), "best_other": best},
          "vision_first_minus_query_first": difference(dense, others["query_first"]),
          "vision_first_minus_document_first": difference(dense, others["document_first"])}
    full, val = choose_keep(ladder, rungs, share)
    ctrl = control(intervals.speedup(cost["pairs"][AA]))
    paper = cost["paper_like"]["rungs"][full]
    arm = cost["paper_like_arms"][full]
    pl = cost["paper_like"]
    why = (f"analytic FLOPs of rung {full} (exit after {arm['exit']} of {pl['layers']} layers, band {arm['band']}, "
           f"keep {arm['keep']}) at {pl['image_tokens']} image and {pl['query_tokens']} query tokens, document caches "
           "amortised; exit, band and r chosen on validation")
    m2 = {"full_rung": full, "flops_share_paper_like": intervals.by_design(paper["high_reuse"], why),
          "time_share_paper_like": mark_unstable(time_share(cost["pairs"][full]), ctrl),
          "ndcg_ratio": ratio(per_query(ladder[full]), dense), "timing_control": ctrl}
    rows = {}
    for name, runs in [*((f, formats[f]) for f in formats), *((r, ladder[r]) for r in ladder)]:
        rows[name] = {k: intervals.mean_ci([m["test"][k] for m in runs.values()]) for k in METRICS}
        rows[name]["ratio_to_dense"] = ratio(per_query(runs), dense)
        if name in ladder:
            rows[name]["val_ndcg10"] = val[name]
    timing = {n: time_share(cost["pairs"][n]) for n in cost["pairs"] if n != AA}
    sanity = quality_window(rows["vision_first"]["ndcg10"]["value"], embed["test"]["ndcg10"])
    if sanity["unmet"]:  # the spec judges quality only on a reranker that learned the task
        for name in m1:
            m1[name]["unmet"] = sanity["unmet"]
        m2["ndcg_ratio"]["unmet"] = sanity["unmet"]
    return {"m1": m1, "m2": m2, "rows": rows, "timing": timing, "selection": selection, "sanity": sanity}


def fmt_e(e: dict, spec: str = ".3f") -> str:
    if e.get("value") is None:
        return "n/a"
    lo, hi = e["ci"]
    return f"{e['value']:{spec}}" + ("" if lo is None else f" [{lo:{spec}}, {hi:{spec}}]")


def predicates(t: dict) -> str:
    q = t.get("predicates")
    return "" if not q else (f" (scene questions plus {q['splits']['train']} 'is there <query> ?' questions on fresh "
                             "scenes, no validation or test query text)")


def method_section(p: dict) -> list[str]:
    """What was chosen where the spec is silent, from the params this run used."""
    src, llm, f = p["data"]["source"], p["model"]["llm"], p["formats"]
    lines = ["## Method: what this run chose where the spec is silent", ""]
    if src["kind"] == "synthetic":
        lines += [f"- Corpus: {src['documents']} scene documents of {src['objects'][0]}-{src['objects'][1]} objects "
                  f"({src['image_size']} px) plus {src['hard_negatives']} hard negative(s) per query (one attribute of one "
                  f"object changed so the predicate fails, same background); queries: attribute / position / relation / "
                  f"count predicates with {src['positives'][0]}-{src['positives'][1]} positives in the base corpus, at most "
                  f"{src['per_kind']} per kind, split {src['splits']}; relevance = the predicate's truth (exact)."]
    lines += [f"- Formats (literal): query-first `[bos] query [image] {f['prompt']}`, document-first `[bos] {f['caption']} "
              f"[image] query {f['prompt']}`, vision-first `[bos] [image] query {f['prompt']}`; relevance = P(yes) of the "
              "yes/no softmax at the last position.",
              f"- First stage: dual encoder ({p['embedder']['model']['num_hidden_layers']} blocks per tower, InfoNCE, "
              f"{p['embedder']['steps']} steps), top-{p['rerank']['candidates']} candidates; its last block's CLS->patch "
              "attention scores visual tokens for pruning (query-agnostic).",
              f"- Reranker: tiny MLLM ({llm.get('num_hidden_layers', 'hub')} layers, width {llm.get('hidden_size', 'hub')}), "
              f"vision tower {'frozen' if p['finetune'].get('freeze_vision') else 'trained'}, image-first VQA "
              f"pre-training {p['pretrain']['steps']} steps{predicates(p['pretrain'])}, fine-tuning {p['finetune']['steps']} steps "
              f"per format and seed on balanced pairs (positives; negatives from the query's first-stage candidates); "
              f"each ladder rung adapts the seed's dense vision-first model for {p['adapt']['steps']} steps.",
              f"- L_e: the smallest of {p['select']['exit_layers']} whose validation NDCG@10 after adaptation keeps "
              f"{p['select']['keep_share']:.0%} of dense; band width {p['select']['band_width']} at the largest "
              "query->document attention mass (dense, validation); r: the smallest kept share whose validation NDCG@10 "
              f"keeps {p['select']['keep_share']:.0%} of the band rung's; positions `{p['positions']}`.",
              "- Dense baseline: the fine-tuned vision-first model, one whole forward per pair, every layer and token. "
              "The ladder's rungs run the deployed path: each candidate's KV computed once, the query against it.", ""]
    return lines


def report_tables(m: dict, cost: dict, seeds: list, embed: dict, params: dict | None = None) -> str:
    s = m["selection"]
    lines = [*(method_section(params) if params else []), "## Ranking quality (test queries, first-stage top-K reranked)", "",
             f"Seeds {seeds} vary fine-tuning (finetune) and adaptation (ladder) pairs; the data, the embedder, "
             "VQA pre-training and the choices of L_e and the band (select, one seed) are shared. Intervals: "
             "means over seeds; ratios paired over seeds x queries.", "",
             f"First stage (embedder): NDCG@10 {embed['test']['ndcg10']:.3f}, MRR {embed['test']['mrr']:.3f}, "
             f"Hit@1 {embed['test']['hit1']:.3f}, recall@K {embed['test']['recall']:.3f}. Reranking its candidates "
             f"scores NDCG@10 {embed['test']['ndcg10_shuffled']:.3f} in random order (expected) and "
             f"{embed['test']['ndcg10_sorted']:.3f} sorted by relevance (the ceiling).", "",
             "| arm | NDCG@10 | MRR | Hit@1 | NDCG@10 / dense | val NDCG@10 |", "|---|---|---|---|---|---|"]
    for name, r in m["rows"].items():
        val = f"{r['val_ndcg10']:.3f}" if "val_ndcg10" in r else ""
        lines.append(f"| {name} | {fmt_e(r['ndcg10'])} | {fmt_e(r['mrr'])} | {fmt_e(r['hit1'])} | "
                     f"{fmt_e(r['ratio_to_dense'])} | {val} |")
    lines += ["", f"Selected on validation: exit after layer {s['exit']} of {s['n_layers']}, band layers "
              f"[{s['band'][0]}, {s['band'][0] + s['band'][1]}), full miniReranker = `{m['m2']['full_rung']}`.", "",
              "## Cost per (query, document) pair relative to dense scoring", "",
              "| rung | FLOPs tiny, high reuse | tiny, low reuse | paper-like, high reuse | paper-like, low reuse | "
              "measured time, paper-like tokens, high reuse |", "|---|---|---|---|---|---|"]
    for name in cost["tiny"]["rungs"]:
        t, pl = cost["tiny"]["rungs"][name], cost["paper_like"]["rungs"][name]
        tm = m["timing"].get(name)
        lines.append(f"| {name} | {t['high_reuse']:.4f} | {t['low_reuse']:.4f} | {pl['high_reuse']:.5f} | "
                     f"{pl['low_reuse']:.4f} | {fmt_e(tm, '.5f') if tm else ''} |")
    ctrl = m["m2"]["timing_control"]
    tm = cost["timing"]
    lines += ["", f"Timing: {tm['layers']} layers, width {tm['width']}, {tm['image_tokens']} image + "
              f"{tm['query_tokens']} query tokens, {tm['candidates']} candidate(s) per call, random weights; dense "
              f"{m['timing'][m['m2']['full_rung']]['dense_seconds']:.3f} s per call; A/A control "
              f"{fmt_e(ctrl)} ({'stable' if ctrl['stable'] else 'UNSTABLE'}).", "",
              "## Design checks", "", *(f"- {k}: {v}" for k, v in m["sanity"].items())]
    return "\n".join(lines) + "\n"
