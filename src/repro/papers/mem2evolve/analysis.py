"""Stage 4: V1-V2 effects from every agent job (paired by seed, order and task), the regime, the
seed-only A/A controls and the leak audit; figures (online and held-out Pass@1 curves, held-out
Pass@1 per arm, asset count over the stream) and report tables."""
import statistics

import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.mem2evolve import effects
from repro.report.figures import plt, save


def load_runs(inputs: dict, aa_seeds: list[int]) -> tuple[dict, list]:
    """arm -> runs on the main seeds, and the static arm's runs on the A/A seeds."""
    runs, aa = {}, []
    for name, path in sorted(inputs.items()):
        if name.startswith("agent_"):
            m = read_metrics(path)
            run = {**m, "items": read_json(path / "items.json")}
            (aa if m["seed"] in aa_seeds else runs.setdefault(m["arm"], [])).append(run)
    return runs, aa


def load_programs(data_dir) -> dict[str, list[dict]]:
    import datasets

    splits = datasets.load_from_disk(str(data_dir / "dataset"))
    return {s: [{k: r[k] for k in ("task_id", "program", "motifs")} for r in ds] for s, ds in splits.items()}


def curves_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, x in m["arms"].items():
        ax.plot(np.arange(1, len(x["curve"]) + 1), 100 * np.asarray(x["curve"]), marker="o", label=arm)
    ax.set_xlabel("block of the online stream")
    ax.set_ylabel("Pass@1 (%), mean over seeds and orders")
    ax.legend(fontsize=8)
    save(fig, path)


def heldout_curve_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, x in m["arms"].items():
        k = len(x["heldout_curve"])
        ax.plot(np.linspace(0, 1, k), 100 * np.asarray(x["heldout_curve"]), marker="o", label=arm)
    ax.set_xlabel("share of the online stream processed (frozen memory snapshot)")
    ax.set_ylabel("held-out Pass@1 (%), mean over seeds and orders")
    ax.legend(fontsize=8)
    save(fig, path)


def heldout_figure(m: dict, runs: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(m["arms"])
    ax.bar(names, [100 * m["arms"][a]["heldout"]["mean"] for a in names], color="C0", alpha=0.6)
    for i, a in enumerate(names):
        ax.plot([i] * len(runs[a]), [100 * statistics.fmean(o["heldout_pass"] for o in r["orders"]) for r in runs[a]],
                "k.", ms=4)
    ax.set_ylabel("held-out Pass@1 (%); dots: seeds")
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
    runs, aa = load_runs(ctx.inputs, ctx.params["runs"]["aa_seeds"])
    m = effects.decide(runs, aa, read_metrics(ctx.inputs["calibrate"]), load_programs(ctx.inputs["data"]), ctx.params)
    curves_figure(m, ctx.out / "online_curves.png")
    heldout_curve_figure(m, ctx.out / "heldout_curves.png")
    heldout_figure(m, runs, ctx.out / "heldout.png")
    assets_figure(m, ctx.out / "asset_count.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, ctx.params))
    return m


if __name__ == "__main__":
    main(run)
