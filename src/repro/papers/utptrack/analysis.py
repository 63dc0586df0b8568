"""Stage 6: claims U1-U3 decided from every (variant, seed) tracking result and the latency pairs,
with the regimes and the seed-only A/A control (the baseline on the A/A seeds); tables, figures."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.video import IOU_THRESHOLDS
from repro.papers.utptrack import effects
from repro.report.figures import plt, save


def success_figure(evals: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_seed in evals.items():
        curves = np.array([m["finetuned"]["success"] for m in by_seed.values()])
        auc = np.mean([m["finetuned"]["auc"] for m in by_seed.values()])
        ax.plot(IOU_THRESHOLDS, curves.mean(0), label=f"{name} [{auc:.3f}]")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("success rate")
    ax.set_title("Success plots, fine-tuned variants (mean over seeds) [AUC]")
    ax.legend(fontsize=8)
    save(fig, path)


def tradeoff_figure(rows: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows.values():
        e, x = r["relative_auc"], r["tokens_pruned"]["block_mean"]
        if e["value"] is None:
            continue
        free = r["mode"] == "training_free"
        lo, hi = e["ci"] if e["ci"][0] is not None else (e["value"], e["value"])
        ax.errorbar(x, e["value"], yerr=[[e["value"] - lo], [hi - e["value"]]], fmt="o", ms=6, capsize=3,
                    color="k", mfc="white" if free else "k")
        ax.annotate(r["variant"] + (" (free)" if free else ""), (x, e["value"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("vision tokens pruned, mean over blocks of the tokens each block read (measured)")
    ax.set_ylabel("AUC / fine-tuned baseline AUC (95% CI)")
    ax.set_title("Accuracy vs tokens pruned (filled: fine-tuned, hollow: training-free)")
    save(fig, path)


def finetune_figure(histories: dict, path) -> None:
    """Training loss, validation loss at the target keep ratios (means over seeds) and the keep-rate
    warm-up weight per variant."""
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4))
    for name, by_seed in histories.items():
        loss = np.mean([h["train_loss"] for h in by_seed.values()], axis=0)
        width = max(1, min(10, len(loss)))
        a1.plot(np.convolve(loss, np.ones(width) / width, mode="valid"), lw=1, label=name)
        val = np.mean([np.asarray(h["val"], float) for h in by_seed.values()], axis=0)
        a2.plot(val[:, 0], val[:, 1], marker="o", ms=3, lw=1, label=name)
        a3.plot(next(iter(by_seed.values()))["warm"], lw=1, label=name)
    a1.set_xlabel("fine-tuning step")
    a1.set_ylabel("training loss (10-step mean, mean over seeds)")
    a1.legend(fontsize=7)
    a2.set_xlabel("fine-tuning step")
    a2.set_ylabel("validation loss at the target keep ratios")
    a2.set_yscale("log")
    a3.set_xlabel("fine-tuning step")
    a3.set_ylabel("warm-up weight w (keep = target + (1 - target) w)")
    save(fig, path)


def run(ctx: StageContext) -> dict:
    names, seeds, roles = list(ctx.params["variants"]), ctx.params["seeds"], ctx.params["analysis"]["roles"]
    evals = {n: {s: read_metrics(ctx.inputs[f"evaluate_{n}_seed{s}"]) for s in seeds} for n in names}
    histories = {n: {s: read_json(ctx.inputs[f"finetune_{n}_seed{s}"] / "history.json") for s in seeds}
                 for n in names}
    aa = {s: read_metrics(ctx.inputs[f"evaluate_{roles['baseline']}_seed{s}"]) for s in ctx.params["aa_seeds"]}
    m = effects.decide(evals, read_metrics(ctx.inputs["latency"]), roles, histories, aa)
    success_figure(evals, ctx.out / "success.png")
    tradeoff_figure(m["variants"], ctx.out / "tradeoff.png")
    finetune_figure(histories, ctx.out / "finetune.png")
    keep = {n: evals[n][seeds[0]]["keep"] for n in names}
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, evals, keep))
    return m


if __name__ == "__main__":
    main(run)
