"""Stage 10: claims M1-M2's effects, regime and controls from every (format, seed) and (rung, seed)
reranking run, the A/A seeds' runs, the selection, pre-training's go/no-go and the cost job; tables
and figures."""
from repro.core.io import atomic_write_text, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.minireranker import effects
from repro.report.figures import plt, save


def ladder_figure(m: dict, cost: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in m["rows"].items():
        share = cost["paper_like"]["rungs"].get(name, {}).get("high_reuse", 1.0)
        e = r["ratio_to_dense"]
        if e["value"] is None:
            continue
        lo, hi = e["ci"] if e["ci"][0] is not None else (e["value"], e["value"])
        ax.errorbar(share, e["value"], yerr=[[e["value"] - lo], [hi - e["value"]]], fmt="o", capsize=3, color="k")
        ax.annotate(name, (share, e["value"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.axvline(0.01, color="k", ls=":", lw=0.8)
    ax.axhline(0.96, color="k", ls=":", lw=0.8)
    ax.set_xlabel("FLOPs per pair / dense, paper-like token counts, high reuse (formats: 1)")
    ax.set_ylabel("test NDCG@10 / dense vision-first (95% CI)")
    ax.set_title("The ladder: quality kept against cost")
    save(fig, path)


def selection_figure(sel: dict, path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    curve = sel["exit_curve"]
    a1.plot([int(k) for k in curve], list(curve.values()), marker="o")
    a1.axhline(sel["keep_share"] * sel["dense_val_ndcg10"], color="k", ls=":", label="keep share x dense")
    a1.set_xlabel("exit after layer")
    a1.set_ylabel("validation NDCG@10 after adaptation")
    a1.legend(fontsize=8)
    a2.bar(range(len(sel["query_to_document_mass"])), sel["query_to_document_mass"])
    a2.set_xlabel("layer")
    a2.set_ylabel("query -> document attention mass (dense, validation)")
    save(fig, path)


def run(ctx: StageContext) -> dict:
    p = ctx.params
    seeds = p["seeds"]
    formats = {f: {s: read_metrics(ctx.inputs[f"finetune_{f}_seed{s}"]) for s in seeds}
               for f in ("query_first", "document_first", "vision_first")}
    aa = {s: read_metrics(ctx.inputs[f"finetune_vision_first_seed{s}"]) for s in p["aa_seeds"]}
    ladder = {r: {s: read_metrics(ctx.inputs[f"ladder_{r}_seed{s}"]) for s in seeds} for r in p["ladder"]}
    sel, cost, embed, pre = (read_metrics(ctx.inputs[k]) for k in ("select", "cost", "embed", "pretrain"))
    m = effects.decide(formats, ladder, aa, sel, cost, embed, p["ladder"], p["select"]["keep_share"],
                       p["rerank"]["decided_kinds"])
    ladder_figure(m, cost, ctx.out / "ladder.png")
    selection_figure(sel, ctx.out / "selection.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, cost, seeds, embed, pre, p))
    return m


if __name__ == "__main__":
    main(run)
