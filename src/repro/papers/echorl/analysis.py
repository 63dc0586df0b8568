"""Stage 4: E1-E3 effects from every RL job (paired by seed and test prompt); figures (degenerate
fraction, policy-gradient norm, accuracy per arm, step-entropy profile) and report tables."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.echorl import effects
from repro.report.figures import plt, save


def curve_figure(histories: dict, key: str, ylabel: str, path, window: int = 5) -> None:
    """Per arm: the mean over seeds (moving average over `window` steps), min-max band over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, hs in histories.items():
        ys = np.array([[row[key] for row in h] for h in hs])
        kernel = np.ones(min(window, ys.shape[1])) / min(window, ys.shape[1])
        smooth = np.array([np.convolve(y, kernel, mode="valid") for y in ys])
        x = np.arange(smooth.shape[1]) + kernel.size - 1
        ax.plot(x, smooth.mean(0), label=arm)
        ax.fill_between(x, smooth.min(0), smooth.max(0), alpha=0.15)
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    save(fig, path)


def accuracy_figure(m: dict, runs: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(m["arms"])
    for j, split in enumerate(("id", "ood")):
        x = np.arange(len(names)) + (j - 0.5) * 0.38
        ax.bar(x, [100 * m["arms"][a][split]["mean"] for a in names], 0.36,
               yerr=[100 * m["arms"][a][split]["std"] for a in names], capsize=3, label=split.upper())
        for xi, a in zip(x, names):
            ax.plot([xi] * len(runs[a]), [100 * r[f"{split}_accuracy"] for r in runs[a]], "k.", ms=4)
        ax.axhline(100 * m["sft"][f"{split}_accuracy"], color=f"C{j}", ls="--", lw=1)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("greedy accuracy (%); dashed: SFT init; dots: seeds")
    ax.legend(fontsize=8)
    save(fig, path)


def entropy_figure(profile: dict, path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    idx = profile["by_step_index"]
    a.bar([int(k) + 1 for k in idx], [v for v in idx.values()])
    a.set_xlabel("step (line) of the response")
    a.set_ylabel("mean step entropy (nats)")
    vals = [profile["no_carry_steps"] or 0.0, profile["carry_steps"] or 0.0]
    b.bar(["no carry", "carry"], vals, color=["C0", "C3"])
    b.set_title("addition steps with / without a carry", fontsize=9)
    save(fig, path)


def load_runs(inputs: dict) -> tuple[dict, dict]:
    """arm -> run records (metrics + per-prompt correctness), arm -> histories. Pairing by prompt needs
    every job to have evaluated the same prompts in the same order: checked here."""
    runs, histories, prompts = {}, {}, None
    for name, path in sorted(inputs.items()):
        if not name.startswith("rl_"):
            continue
        metrics, items = read_metrics(path), read_json(path / "items.json")
        seen = {split: v["prompt"] for split, v in items.items()}
        if prompts is not None and seen != prompts:
            raise ValueError(f"{path}: its test prompts differ from the other RL jobs'; arms cannot be paired")
        prompts = seen
        correct = {split: v["correct"] for split, v in items.items()}
        runs.setdefault(metrics["arm"], []).append({**metrics, "correct": correct})
        histories.setdefault(metrics["arm"], []).append(read_json(path / "history.json"))
    return runs, histories


def run(ctx: StageContext) -> dict:
    runs, histories = load_runs(ctx.inputs)
    m = effects.decide(runs, read_metrics(ctx.inputs["sft"]), ctx.params["arms"])
    curve_figure(histories, "all_success_fraction", "fraction of all-success (degenerate) groups",
                 ctx.out / "degenerate_fraction.png")
    curve_figure(histories, "pg_norm", "policy-gradient norm (PPO-clip term)", ctx.out / "pg_norm.png")
    accuracy_figure(m, runs, ctx.out / "accuracy.png")
    entropy_figure(m["entropy_profile"], ctx.out / "step_entropy.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, ctx.params["arms"], ctx.params))
    return m


if __name__ == "__main__":
    main(run)
