"""Stage 4: latency-quality curves (quality vs AL and LAAL), AUROC of each head, claims A1-A3."""
import numpy as np

from repro.core.io import atomic_write_text, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.proactivellm import effects
from repro.report.figures import plt, save

# (arm, policy, label, style): the curves drawn on each latency-quality figure
CURVES = [("v1", "waitk", "V1 wait-k (k sweep)", "ks-"), ("v3", "waitk", "V3 under wait-k", "k:"),
          ("v3", "entropy", "V3 entropy head", "o-"), ("v3", "maxprob", "V3 max-prob head", "^-"),
          ("v3", "attention", "V3 attention head", "v-"), ("v2", "entropy", "V2 (MSM) entropy head", "o--"),
          ("v0", "entropy", "V0 entropy head", "o:"), ("v4", "learned", "V4 oracle-trained head", "D--")]


def latency_figure(name: str, res: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    scale = "BLEU / 100" if res["metric"] == "bleu" else "accuracy"
    for ax, key in zip(axes, ("al", "laal")):
        for arm, policy, label, style in CURVES:
            pts = effects.curve(res["arms"].get(arm, {}).get("points", []), policy)
            if pts:
                ax.plot([p[key] for p in pts], [p["quality"] for p in pts], style, ms=4, label=label)
        for arm, policy, marker, label in (("v0", "read_all", "*", "read-then-generate (V0)"),
                                           ("v3", "oracle", "P", "oracle policy (V3)")):
            p = effects.curve(res["arms"][arm]["points"], policy)[0]
            ax.plot([p[key]], [p["quality"]], marker, ms=12, label=label)
        ax.set_xlabel(f"{key.upper()} (source words)")
        ax.set_ylabel(scale)
        ax.set_title(f"{name}: quality vs {key.upper()}")
    axes[0].legend(fontsize=7)
    save(fig, path)


def auroc_figure(tasks: dict, path) -> None:
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], tasks.items()):
        arms = list(res["arms"])
        x = np.arange(len(arms))
        for i, h in enumerate((*effects.HEADS, "learned")):
            vals = [res["arms"][a]["auroc"].get(h) for a in arms]
            ax.bar(x + (i - 1.5) * 0.2, [v if v is not None else 0 for v in vals], width=0.2, label=h)
        ax.axhline(0.5, color="k", ls=":", lw=1)
        ax.set_xticks(x, arms)
        ax.set_ylim(0.3, 1.0)
        ax.set_ylabel("AUROC vs oracle sufficiency")
        ax.set_title(name)
    axes[0][0].legend(fontsize=8)
    save(fig, path)


def run(ctx: StageContext) -> dict:
    tasks = {}
    for key, path in sorted(ctx.inputs.items()):
        m = read_metrics(path)
        tasks[m["task"]] = m
    m = effects.decide(tasks, ctx.params["analysis"]["keep_quality"])
    for name, res in tasks.items():
        latency_figure(name, res, ctx.out / f"latency_quality_{name}.png")
    auroc_figure(tasks, ctx.out / "auroc.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, tasks))
    return m


if __name__ == "__main__":
    main(run)
