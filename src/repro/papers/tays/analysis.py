"""Stage 6: claims T1-T3, their regimes and controls from every (arm, seed) evaluation (the A/A
seeds' included) and the measured compute costs; the rho and frame-rate sweeps, tables and figures."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.tays import effects
from repro.report.figures import plt, save


def sweep_figure(m: dict, path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (name, sweep) in zip(axes[:2], (("rho", m["rho_sweep"]), ("frames per second", m["fps_sweep"]))):
        keys = list(sweep)
        for arm in next(iter(sweep.values())):
            e = [sweep[k][arm]["delay"] for k in keys]
            ends = [x["ci"] if x["ci"][0] is not None else [x["value"]] * 2 for x in e]  # one seed: no interval
            ax.errorbar([float(k) for k in keys], [x["value"] * 1e3 for x in e], capsize=3, marker="o", label=arm,
                        yerr=[[(x["value"] - lo) * 1e3 for x, (lo, _) in zip(e, ends)],
                              [(hi - x["value"]) * 1e3 for x, (_, hi) in zip(e, ends)]])
        ax.set_xlabel(name)
        ax.set_ylabel("delay after stream end (ms, simulated clock)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    table = m["rho_sweep"]["1.0"] if "1.0" in m["rho_sweep"] else next(iter(m["rho_sweep"].values()))
    arms = list(table)
    for i, key in enumerate(("ttft", "first_content", "delay")):
        axes[2].bar(np.arange(len(arms)) + 0.27 * (i - 1), [table[a][key]["value"] * 1e3 for a in arms], 0.27, label=key)
    axes[2].set_xticks(range(len(arms)), arms, fontsize=8)
    axes[2].set_ylabel("ms at the checked rho")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=8)
    save(fig, path)


def loss_figure(histories: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, by_seed in histories.items():
        loss = np.mean([h["train_loss"] for h in by_seed.values()], axis=0)
        width = max(1, min(10, len(loss)))
        ax.plot(np.convolve(loss, np.ones(width) / width, mode="valid"), label=arm)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted training loss (10-step mean, mean over seeds)")
    ax.legend(fontsize=8)
    save(fig, path)


def run(ctx: StageContext) -> dict:
    p = ctx.params
    arms, seeds, aa_seeds = p["arms"], p["seeds"], p["aa_seeds"]
    aa_arm = p["analysis"]["roles"]["batch_units"]
    records = {a: {s: read_json(ctx.inputs[f"evaluate_{a}_seed{s}"] / "records.json") for s in seeds} for a in arms}
    aa_runs = {s: read_json(ctx.inputs[f"evaluate_{aa_arm}_seed{s}"] / "records.json") for s in aa_seeds}
    histories = {a: {s: read_json(ctx.inputs[f"train_{a}_seed{s}"] / "history.json") for s in seeds} for a in arms}
    # rho from the training split's ground-truth units (issue 32: never from the test split)
    unit_tokens = read_metrics(ctx.inputs["data"])["train"]["unit_tokens_mean"]
    m = effects.decide(records, aa_runs, read_metrics(ctx.inputs["latency"]), p["analysis"], unit_tokens,
                       p["data"]["fps"])
    m["training"] = {a: {s: read_metrics(ctx.inputs[f"train_{a}_seed{s}"])["train_loss_last"] for s in seeds} for a in arms}
    sweep_figure(m, ctx.out / "timing.png")
    loss_figure(histories, ctx.out / "training.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, seeds, aa_seeds, p["data"]["fps"]))
    return m


if __name__ == "__main__":
    main(run)
