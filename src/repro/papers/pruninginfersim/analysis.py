"""Stage 6: Pareto frontier, bound efficiency and GEMM taxonomy across all families; figures."""
from repro.core.io import atomic_write_text, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.pruninginfersim import effects
from repro.papers.pruninginfersim.method import FAMILIES
from repro.report.figures import plt, save


def frontier_figure(m: dict, bands, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lo, hi in bands:
        ax.axvspan(100 * lo, 100 * hi, color="0.92")
    for fam in FAMILIES:
        pts = sorted((p for p in m["points"] if p["family"] == fam), key=lambda p: p["sparsity"])
        if pts:
            ax.plot([100 * p["quality_loss"] for p in pts], [p["speedup"] for p in pts], "o-", label=fam)
    front = m["frontier"]
    ax.plot([100 * p["quality_loss"] for p in front], [p["speedup"] for p in front], "k--", lw=1,
            label="Pareto frontier")
    ax.set_xlabel("quality loss (% increase of held-out loss)")
    ax.set_ylabel(f"prefill speedup ({m['p2']['setting']})")
    ax.set_xscale("symlog", linthresh=5)
    ax.legend(fontsize=8)
    save(fig, path)


def efficiency_figure(latency: dict, path) -> None:
    settings = list(latency["dense"].keys())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, phase in zip(axes, ("prefill", "decode")):
        for fam, lat in latency["families"].items():
            ks = [k for k in settings if k.startswith(phase)]
            eff = [sum(e[k]["bound_efficiency"] for e in lat["sparsities"].values()) / len(lat["sparsities"])
                   for k in ks]
            ax.plot(range(len(ks)), eff, "o-", label=fam)
            ax.set_xticks(range(len(ks)), [k.removeprefix(phase + "_") for k in ks])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_title(f"{phase}: speedup / bound (mean over sparsities)")
    axes[0].set_ylabel("bound efficiency")
    axes[1].legend(fontsize=8)
    save(fig, path)


def run(ctx: StageContext) -> dict:
    a = ctx.params["analysis"]
    quality = {f: read_metrics(ctx.inputs[f"evaluate_{f}"]) for f in ctx.params["families"]}
    latency = read_metrics(ctx.inputs["latency"])
    m = effects.decide(quality, latency, a)
    frontier_figure(m, a["loss_bands"], ctx.out / "frontier.png")
    efficiency_figure(latency, ctx.out / "bound_efficiency.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, latency))
    return m


if __name__ == "__main__":
    main(run)
