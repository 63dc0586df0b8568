"""Stage 6: claims U1-U3 decided from every variant's tracking results and latency; tables, figures."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.video import IOU_THRESHOLDS
from repro.papers.utptrack import effects
from repro.report.figures import plt, save



def success_figure(evals: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, ev in evals.items():
        m = ev["finetuned"]
        ax.plot(IOU_THRESHOLDS, m["success"], label=f"{name} [{m['auc']:.3f}]")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("success rate")
    ax.set_title("Success plots, fine-tuned variants [AUC]")
    ax.legend(fontsize=8)
    save(fig, path)


def tradeoff_figure(rows: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, r in rows.items():
        free = r["mode"] == "training_free"
        ax.scatter(r["tokens_pruned_final"], r["relative_auc"], marker="o", s=40,
                   facecolors="none" if free else None, edgecolors="k" if free else None)
        ax.annotate(r["variant"] + (" (free)" if free else ""), (r["tokens_pruned_final"], r["relative_auc"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("vision tokens pruned after the last block")
    ax.set_ylabel("AUC / fine-tuned baseline AUC")
    ax.set_title("Accuracy vs tokens pruned (filled: fine-tuned, hollow: training-free)")
    save(fig, path)


def finetune_figure(histories: dict, path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, h in histories.items():
        loss = np.asarray(h["train_loss"])
        width = max(1, min(10, len(loss)))
        a1.plot(np.convolve(loss, np.ones(width) / width, mode="valid"), lw=1, label=name)
        a2.plot(h["warm"], lw=1, label=name)
    a1.set_xlabel("fine-tuning step")
    a1.set_ylabel("training loss (10-step mean)")
    a1.legend(fontsize=7)
    a2.set_xlabel("fine-tuning step")
    a2.set_ylabel("warm-up weight w (keep = target + (1 - target) w)")
    save(fig, path)


def run(ctx: StageContext) -> dict:
    names = list(ctx.params["variants"])
    evals = {n: read_metrics(ctx.inputs[f"evaluate_{n}"]) for n in names}
    latency = read_metrics(ctx.inputs["latency"])["variants"]
    a = ctx.params["analysis"]
    m = effects.decide(evals, latency, a["roles"], a["bootstrap"], ctx.seed)
    histories = {n: read_json(ctx.inputs[f"finetune_{n}"] / "history.json") for n in names}
    success_figure(evals, ctx.out / "success.png")
    tradeoff_figure(m["variants"], ctx.out / "tradeoff.png")
    finetune_figure(histories, ctx.out / "finetune.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, {n: evals[n]["keep"] for n in names}))
    return m


if __name__ == "__main__":
    main(run)
