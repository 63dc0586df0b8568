"""Stage 4: V1-V2 effects from every agent job (paired by task order, seed and task); figures
(online Pass@1 curves, held-out Pass@1 per arm, asset count over the stream) and report tables."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.mem2evolve import effects
from repro.report.figures import plt, save


def load_runs(inputs: dict) -> dict:
    runs = {}
    for name, path in sorted(inputs.items()):
        if name.startswith("agent_"):
            m = read_metrics(path)
            runs.setdefault(m["arm"], []).append({**m, "items": read_json(path / "items.json")})
    return runs


def curves_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, x in m["arms"].items():
        ax.plot(np.arange(1, len(x["curve"]) + 1), 100 * np.asarray(x["curve"]), marker="o", label=arm)
    ax.set_xlabel("block of the online stream")
    ax.set_ylabel("Pass@1 (%), mean over runs")
    ax.legend(fontsize=8)
    save(fig, path)


def heldout_figure(m: dict, runs: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(m["arms"])
    ax.bar(names, [100 * m["arms"][a]["heldout"]["mean"] for a in names], color="C0", alpha=0.6)
    for i, a in enumerate(names):
        ax.plot([i] * len(runs[a]), [100 * r["heldout_pass"] for r in runs[a]], "k.", ms=4)
    ax.set_ylabel("held-out Pass@1 (%); dots: runs")
    save(fig, path)


def assets_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for arm, x in m["arms"].items():
        if x["tools_created"]["mean"]:
            ax.plot(x["asset_count"], label=arm)
    ax.set_xlabel("task of the stream (initialisation + online)")
    ax.set_ylabel("active tools")
    ax.legend(fontsize=8)
    save(fig, path)


def run(ctx: StageContext) -> dict:
    runs = load_runs(ctx.inputs)
    m = effects.decide(runs, read_metrics(ctx.inputs["calibrate"]), ctx.params["analysis"]["curve_blocks"])
    curves_figure(m, ctx.out / "online_curves.png")
    heldout_figure(m, runs, ctx.out / "heldout.png")
    assets_figure(m, ctx.out / "asset_count.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, ctx.params))
    return m


if __name__ == "__main__":
    main(run)
