"""The claims' effects from the jobs' metrics, and the report's tables.

Quality effects are paired over (seed, test query) on the query kinds the claims decide
(`rerank.decided_kinds`): every format and rung reranks the same first-stage candidates of the same
test queries with each seed, so the intervals are the crossed seeds x shared queries ones
(repro.report.intervals.hierarchical) over per-query differences. The other kinds are a reported
stratum. Regime (the spec's precondition): the dense vision-first reranker beats the first stage and
sits in 0.5-0.9 NDCG@10; it gates every check, the cost shares too, since the exit, band and keep
ratio are chosen against the dense model. Controls: the dense arm fine-tuned on disjoint seeds
(`aa_seeds`) against the main seeds through the claims' own effect functions (seed-only A/A), and
the timing job's A/A.
"""
from __future__ import annotations

import numpy as np

from repro.core.timing import AA
from repro.report import intervals
from repro.report.verdicts import fmt_ci, seed_control, timing_control

METRICS = ("ndcg10", "mrr", "hit1")
DENSE = "dense"  # the ladder rung with every layer and token, adapted for the same steps as the others


def per_query(runs: dict, kinds, split: str = "test", metric: str = "ndcg10") -> dict:
    """{seed: array over the split's queries of `kinds` (sorted by id)} of one arm's runs ({seed: metrics})."""
    out = {}
    for seed, m in sorted(runs.items()):
        rows = m[split]["per_query"]
        out[seed] = np.array([rows[q][metric] for q in sorted(rows, key=int) if rows[q]["kind"] in kinds])
    return out


def first_stage(embed: dict, seeds, kinds) -> dict:
    """The embedder's per-query NDCG@10 on the same test queries, the same for every seed (one run)."""
    rows = embed["test"]["per_query"]
    x = np.array([rows[q]["ndcg10"] for q in sorted(rows, key=int) if rows[q]["kind"] in kinds])
    return {s: x for s in seeds}


def relabel(runs: dict, seeds) -> dict:
    """The A/A seeds' runs keyed by the main seeds, position by position, so the paired effect
    functions pair seed i of one set with seed i of the other."""
    return dict(zip(seeds, (runs[s] for s in sorted(runs))))


difference = intervals.hierarchical_diff  # {seed: items} per arm, paired by (seed, item)


def ratio(a: dict, b: dict) -> dict:
    """Mean NDCG of a / mean NDCG of b, paired by (seed, query)."""
    return intervals.hierarchical_ratio(a, b, "the dense reranker scores 0 on every query: no ratio")


def choose_keep(ladder: dict, rungs: dict, share: float, kinds) -> tuple[str, dict]:
    """The full miniReranker's pruning share r, on validation: among the band rung (r = 1) and the
    pruned rungs, the smallest r whose validation NDCG@10 (mean over seeds and the decided kinds'
    queries) keeps `share` of the band rung's."""
    val = {n: float(np.mean([x.mean() for x in per_query(ladder[n], kinds, "val").values()])) for n in ladder}
    banded = [n for n in rungs if rungs[n].get("band")]
    base = next(n for n in banded if rungs[n].get("keep", 1.0) == 1.0)
    ok = [n for n in banded if val[n] >= share * val[base]]
    return min(ok, key=lambda n: rungs[n].get("keep", 1.0)), val


def time_share(pair_times: dict, aa: dict) -> dict:
    """Variant time / dense time per interleaved pair, the median with its interval, widened by the
    job's A/A control (`intervals.against_aa`)."""
    share = intervals.median_ratio([v / b for b, v in zip(pair_times["baseline_s"], pair_times["variant_s"])])
    return {**intervals.against_aa(share, aa), "seconds": float(np.median(pair_times["variant_s"])),
            "dense_seconds": float(np.median(pair_times["baseline_s"]))}


def by_kind_table(runs: dict) -> dict:
    """{kind: mean test NDCG@10 over seeds} of one arm."""
    kinds = sorted({r["kind"] for m in runs.values() for r in m["test"]["per_query"].values()})
    return {k: float(np.mean([m["test"]["by_kind"][k]["ndcg10"] for m in runs.values()])) for k in kinds}


def decide(formats: dict, ladder: dict, aa: dict, selection: dict, cost: dict, embed: dict, rungs: dict,
           share: float, kinds) -> dict:
    """formats / ladder: {name: {seed: metrics}}; aa: the vision-first runs on the A/A seeds. The
    claims' effects, regime, controls and the tables' numbers."""
    seeds = sorted(formats["vision_first"])
    dense = per_query(formats["vision_first"], kinds)
    others = {n: per_query(formats[n], kinds) for n in ("query_first", "document_first")}
    means = {n: float(np.mean([x.mean() for x in v.values()])) for n, v in others.items()}
    best = max(means, key=means.get)
    m1 = {"vision_first_minus_best_other": {**difference(dense, others[best]), "best_other": best},
          "vision_first_minus_query_first": difference(dense, others["query_first"]),
          "vision_first_minus_document_first": difference(dense, others["document_first"])}
    full, val = choose_keep(ladder, rungs, share, kinds)
    aa_timing = intervals.speedup(cost["pairs"][AA])
    pl, arm = cost["paper_like"], cost["paper_like_arms"][full]
    why = (f"analytic FLOPs of rung {full} (exit after {arm['exit']} of {pl['layers']} layers, band {arm['band']}, "
           f"keep {arm['keep']}) at {pl['image_tokens']} image and {pl['query_tokens']} query tokens, document caches "
           "amortised; exit, band and r chosen on validation")
    adapted = per_query(ladder[DENSE], kinds)
    m2 = {"full_rung": full, "flops_share_paper_like": intervals.by_design(pl["rungs"][full]["high_reuse"], why),
          "time_share_paper_like": time_share(cost["pairs"][full], aa_timing),
          "ndcg_ratio": ratio(per_query(ladder[full], kinds), adapted)}
    regime = {"dense_ndcg10": intervals.hierarchical(list(dense.values())),
              "dense_minus_first_stage": difference(dense, first_stage(embed, seeds, kinds))}
    aa_dense = relabel(per_query(aa, kinds), seeds)
    controls = {
        "seed_aa": seed_control(difference(aa_dense, dense), "vision-first fine-tuned on the A/A seeds minus the "
                                "main seeds, NDCG@10 (M1's effect function)"),
        "seed_aa_ratio": seed_control(ratio(aa_dense, dense), "vision-first on the A/A seeds / the main seeds, NDCG@10 "
                                      "(M2's ratio function)", null=1.0),
        "timing_aa": timing_control(aa_timing, "dense scoring against an identical copy (cost job)")}
    rows = {}
    for name, runs in [*((f, formats[f]) for f in formats), *((r, ladder[r]) for r in ladder)]:
        q = per_query(runs, kinds)
        rows[name] = {k: intervals.hierarchical(list(per_query(runs, kinds, metric=k).values())) for k in METRICS}
        rows[name]["ratio_to_dense"] = ratio(q, adapted if name in ladder else dense)
        if name in ladder:
            rows[name]["val_ndcg10"] = val[name]
    strata = {"first stage": {k: v["ndcg10"] for k, v in embed["test"]["by_kind"].items()},
              **{f: by_kind_table(formats[f]) for f in formats}, **{r: by_kind_table(ladder[r]) for r in ladder}}
    timing = {n: time_share(cost["pairs"][n], aa_timing) for n in cost["pairs"] if n != AA}
    return {"m1": m1, "m2": m2, "regime": regime, "controls": controls, "rows": rows, "strata": strata,
            "timing": timing, "selection": selection, "decided_kinds": list(kinds)}


def method_section(p: dict) -> list[str]:
    """What was chosen where the spec is silent, from the params this run used."""
    src, llm, f = p["data"]["source"], p["model"]["llm"], p["formats"]
    t, pre = p["tower"], p["pretrain"]
    lines = ["## Method: what this run chose where the spec is silent", ""]
    if src["kind"] == "synthetic":
        lines += [f"- Corpus: {src['documents']} scene documents of {src['objects'][0]}-{src['objects'][1]} objects "
                  f"({src['image_size']} px) plus {src['hard_negatives']} hard negative(s) per query (one attribute of one "
                  f"object changed so the predicate fails, same background); queries with {src['positives'][0]}-"
                  f"{src['positives'][1]} positives in the base corpus, at most {src['per_kind']} texts per kind, split "
                  f"{src['splits']} within each kind; relevance = the predicate's truth (exact). The claims read "
                  f"{', '.join(p['rerank']['decided_kinds'])}; the other kinds are a stratum."]
    lines += [f"- Formats (literal): query-first `[bos] query [image] {f['prompt']}`, document-first `[bos] {f['caption']} "
              f"[image] query {f['prompt']}`, vision-first `[bos] [image] query {f['prompt']}`; relevance = P(yes) of the "
              "yes/no softmax at the last position.",
              f"- First stage: dual encoder ({p['embedder']['model']['num_hidden_layers']} blocks per tower, InfoNCE, "
              f"{p['embedder']['steps']} steps), top-{p['rerank']['candidates']} candidates; its last block's CLS->patch "
              "attention scores visual tokens for pruning (query-agnostic).",
              f"- Reranker: tiny MLLM ({llm.get('num_hidden_layers', 'hub')} layers, width {llm.get('hidden_size', 'hub')}). "
              f"Its vision tower learns per-token object labels (shape, colour, size, centre; {t['steps']} steps on fresh "
              f"scenes), then stays frozen; the projector is aligned to the word embeddings of each token's object phrase "
              f"({p['align']['steps']} steps); pre-training on minimal-pair groups (one satisfying scene, "
              f"{pre['violators'][0]}-{pre['violators'][1]} single-edit violators; listwise + {pre['pointwise']} x pointwise "
              f"loss; {pre['steps']} steps, curriculum {pre['curriculum']}); fine-tuning {p['finetune']['steps']} steps per "
              f"format and seed on groups of a train query's candidates (one relevant, {p['finetune']['group_size'] - 1} "
              f"not), the same loss; each ladder rung, and the dense model, adapts the seed's vision-first model for "
              f"{p['adapt']['steps']} steps.",
              f"- L_e: the smallest of {p['select']['exit_layers']} whose validation NDCG@10 after adaptation keeps "
              f"{p['select']['keep_share']:.0%} of the equally adapted dense model's; band width {p['select']['band_width']} "
              "at the largest query->document attention mass (dense, validation); r: the smallest kept share whose "
              f"validation NDCG@10 keeps {p['select']['keep_share']:.0%} of the band rung's; positions `{p['positions']}`.",
              "- Dense baseline: the fine-tuned vision-first model, one whole forward per pair, every layer and token "
              "(M1, regime); the `dense` rung is that model adapted like every rung (M2's reference). The ladder's rungs "
              "run the deployed path: each candidate's KV computed once, the query against it.", ""]
    return lines


def report_tables(m: dict, cost: dict, seeds: list, embed: dict, pretrain: dict, params: dict | None = None) -> str:
    s, kinds = m["selection"], m["decided_kinds"]
    fs = embed["test"]
    zs = pretrain["zero_shot_val"]
    lines = [*(method_section(params) if params else []),
             "## Pre-training: the go/no-go on validation", "",
             f"Zero-shot (pre-trained, not fine-tuned) validation NDCG@10 over {', '.join(zs['gate_kinds'])} queries: "
             f"{zs['gate']['ndcg10']:.3f} (the amendment's go/no-go: >= 0.6). By kind: "
             + ", ".join(f"{k} {v['ndcg10']:.3f} ({v['queries']} queries)" for k, v in zs["by_kind"].items()) + ".",
             "", f"## Ranking quality (test queries of {', '.join(kinds)}; first-stage top-K reranked)", "",
             f"Seeds {seeds} vary fine-tuning (finetune) and adaptation (ladder) groups; the data, the embedder, the "
             "tower, alignment, pre-training and the choices of L_e and the band (select, one seed) are shared. "
             "Intervals: seeds x shared queries (crossed).", "",
             f"First stage (embedder): NDCG@10 {fs['ndcg10']:.3f} over every test query, "
             + ", ".join(f"{k} {v['ndcg10']:.3f}" for k, v in fs["by_kind"].items())
             + f"; recall@K {fs['recall']:.3f}. Reranking its candidates scores NDCG@10 {fs['ndcg10_shuffled']:.3f} in "
             f"random order (expected) and {fs['ndcg10_sorted']:.3f} sorted by relevance (the ceiling).", "",
             "| arm | NDCG@10 | MRR | Hit@1 | NDCG@10 / dense | val NDCG@10 |", "|---|---|---|---|---|---|"]
    for name, r in m["rows"].items():
        val = f"{r['val_ndcg10']:.3f}" if "val_ndcg10" in r else ""
        lines.append(f"| {name} | {fmt_ci(r['ndcg10'])} | {fmt_ci(r['mrr'])} | {fmt_ci(r['hit1'])} | "
                     f"{fmt_ci(r['ratio_to_dense'])} | {val} |")
    strata_kinds = sorted({k for v in m["strata"].values() for k in v})
    lines += ["", "Formats' rows are relative to the fine-tuned vision-first model, the ladder's to the `dense` rung "
              "(the same model adapted for the same steps).", "",
              "## By query kind (mean test NDCG@10 over seeds; the stratum the claims do not read included)", "",
              "| arm | " + " | ".join(strata_kinds) + " |", "|---|" + "---|" * len(strata_kinds)]
    for name, row in m["strata"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" if k in row else "" for k in strata_kinds) + " |")
    lines += ["", f"Selected on validation: exit after layer {s['exit']} of {s['n_layers']}, band layers "
              f"[{s['band'][0]}, {s['band'][0] + s['band'][1]}), full miniReranker = `{m['m2']['full_rung']}`.", "",
              "## Cost per (query, document) pair relative to dense scoring", "",
              "| rung | FLOPs tiny, high reuse | tiny, low reuse | paper-like, high reuse | paper-like, low reuse | "
              "measured time, paper-like tokens, high reuse (A/A-widened) |", "|---|---|---|---|---|---|"]
    for name in cost["tiny"]["rungs"]:
        t, pl = cost["tiny"]["rungs"][name], cost["paper_like"]["rungs"][name]
        tm = m["timing"].get(name)
        lines.append(f"| {name} | {t['high_reuse']:.4f} | {t['low_reuse']:.4f} | {pl['high_reuse']:.5f} | "
                     f"{pl['low_reuse']:.4f} | {fmt_ci(tm, '.5f') if tm else ''} |")
    tm = cost["timing"]
    lines += ["", f"Timing: {tm['layers']} layers, width {tm['width']}, {tm['image_tokens']} image + "
              f"{tm['query_tokens']} query tokens, {tm['candidates']} candidate(s) per call, random weights; dense "
              f"{m['timing'][m['m2']['full_rung']]['dense_seconds']:.3f} s per call; A/A control "
              f"{fmt_ci(m['controls']['timing_aa']['effect'])}."]
    return "\n".join(lines) + "\n"
