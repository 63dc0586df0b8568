"""Stage 4: R1-R3 effects from every RL job (paired by seed and test QA), their regimes, the seed A/A
control, the credit diagnostic, figures (F1 by QA type per arm, validation F1 during RL) and report
tables."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.memory_r2 import effects
from repro.report.figures import plt, save


def load_runs(inputs: dict, aa_seeds: list[int]) -> tuple[dict, dict]:
    """arm -> run records (metrics, per-conversation test records, validation points, credit triples;
    the A/A seeds under `<arm>_aa`), arm -> validation curves. Pairing needs every job to have tested
    the same conversations in the same order: checked here."""
    runs, curves, ids = {}, {}, None
    for name, path in sorted(inputs.items()):
        if not name.startswith("rl_"):
            continue
        metrics, items = read_metrics(path), read_json(path / "items.json")
        seen = [r["id"] for r in items]
        if ids is not None and seen != ids:
            raise ValueError(f"{path}: its test conversations differ from the other RL jobs'; arms cannot be paired")
        ids = seen
        arm = metrics["arm"] + ("_aa" if metrics["seed"] in aa_seeds else "")
        validation = read_json(path / "validation.json")
        runs.setdefault(arm, []).append({**metrics, "items": items, "validation": validation,
                                         "credit": read_json(path / "credit.json")})
        curves.setdefault(arm, []).append(validation)
    return runs, curves


def type_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(m["arms"])
    width = 0.8 / len(effects.TYPES)
    for j, t in enumerate(effects.TYPES):
        x = np.arange(len(names)) + (j - (len(effects.TYPES) - 1) / 2) * width
        ax.bar(x, [100 * m["arms"][a]["f1_by_type"].get(t, {"mean": 0})["mean"] for a in names], width * 0.95,
               yerr=[100 * m["arms"][a]["f1_by_type"].get(t, {"std": 0})["std"] for a in names], capsize=2, label=t)
    ax.axhline(100 * m["sft"]["shared"]["f1"], color="k", ls="--", lw=1, label="SFT only (all QAs)")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("test token F1 x 100 (mean ± std over seeds)")
    ax.legend(fontsize=7, ncol=5)
    save(fig, path)


def validation_figure(curves: dict, path) -> None:
    """Validation F1 and memory failure at each arm's validation points (step 0: the SFT start)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in zip(axes, ("f1", "memory_failure"), ("F1", "memory failure")):
        for j, (arm, cs) in enumerate(curves.items()):
            for i, c in enumerate(cs):
                ax.plot([v["step"] for v in c], [100 * v[key] for v in c], color=f"C{j}", marker=".",
                        alpha=0.6, label=arm if i == 0 else None)
        ax.set_xlabel("RL step")
        ax.set_ylabel(f"validation {label} x 100 (one line per seed)")
    axes[0].legend(fontsize=8)
    save(fig, path)


def run(ctx: StageContext) -> dict:
    runs, curves = load_runs(ctx.inputs, ctx.params["rl"]["aa_seeds"])
    m = effects.decide(runs, {**read_metrics(ctx.inputs["sft"]), "items": read_json(ctx.inputs["sft"] / "items.json")})
    type_figure(m, ctx.out / "f1_by_type.png")
    validation_figure(curves, ctx.out / "validation_f1.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, ctx.params))
    return m


if __name__ == "__main__":
    main(run)
