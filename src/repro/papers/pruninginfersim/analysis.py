"""Stage 6: bound efficiency (P1), Pareto frontier (P2) and GEMM taxonomy (P3) across all families,
with their intervals; figures and report tables."""
from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.corpus import unigram_entropy
from repro.papers.pruninginfersim import effects
from repro.papers.pruninginfersim.method import FAMILIES
from repro.report.figures import plt, save


def frontier_figure(p2: dict, bands, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lo, hi in bands:
        ax.axvspan(100 * lo, 100 * hi, color="0.92")
    for fam in FAMILIES:
        pts = sorted((p for p in p2["points"] if p["family"] == fam), key=lambda p: p["sparsity"])
        if pts:
            ax.plot([100 * p["quality_loss"] for p in pts], [p["speedup"] for p in pts], "o-", label=fam)
    front = p2["frontier"]
    ax.plot([100 * p["quality_loss"] for p in front], [p["speedup"] for p in front], "k--", lw=1,
            label="Pareto frontier")
    ax.set_xlabel("quality loss (% increase of held-out loss)")
    ax.set_ylabel(f"prefill speedup ({p2['setting']})")
    ax.set_xscale("symlog", linthresh=5)
    ax.legend(fontsize=8)
    save(fig, path)


def efficiency_figure(p1: dict, path) -> None:
    """Ranked families' bound efficiency with its interval, and the 0.85 line of the check."""
    fams = sorted(p1["efficiency"], key=lambda f: p1["efficiency"][f]["value"])
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * max(1, len(fams))))
    for y, fam in enumerate(fams):
        e = p1["efficiency"][fam]
        lo, hi = e["ci"]
        if lo is not None:
            ax.plot([lo, hi], [y, y], color="C0", lw=3)
        ax.plot([e["value"]], [y], "ko", ms=4)
    ax.axvline(0.85, color="k", ls=":", lw=1)
    ax.axvline(1.0, color="0.6", lw=0.8)
    ax.set_yticks(range(len(fams)), fams)
    ax.set_xlabel(f"bound efficiency at {p1['setting']} (95% CI over timing pairs, widened by the A/A)")
    save(fig, path)


def run(ctx: StageContext) -> dict:
    a = ctx.params["analysis"]
    evals = {}
    for name, path in sorted(ctx.inputs.items()):
        if name.startswith("evaluate_"):
            m = read_metrics(path)
            evals.setdefault(m["family"], {})[m["seed"]] = m
    latency = read_metrics(ctx.inputs["latency"])
    pairs = read_json(ctx.inputs["latency"] / "pairs.json")
    m = effects.decide(evals, latency, pairs, a, unigram_entropy(ctx.inputs["data"]), ctx.seed)
    frontier_figure(m["p2"], a["loss_bands"], ctx.out / "frontier.png")
    efficiency_figure(m["p1"], ctx.out / "bound_efficiency.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(
        m, latency, evals, read_metrics(ctx.inputs["train"]), read_metrics(ctx.inputs["data"])))
    return m


if __name__ == "__main__":
    main(run)
