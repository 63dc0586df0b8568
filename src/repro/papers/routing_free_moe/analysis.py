"""Stage 5: claims R1-R4 decided from the evaluate and threshold metrics; tables (with the amended
design's method section, which cites the data stage's validation dedup) and figures."""
import numpy as np

from repro.core.io import atomic_write_text, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.corpus import unigram_entropy
from repro.papers.routing_free_moe import effects
from repro.papers.routing_free_moe._arms import mu_arms, run_key
from repro.report.figures import plt, save


def loss_figure(runs: dict, curves: dict, entropy: float, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, rs in effects.by_seed(runs).items():
        vc = [curves[run_key(arm, seed)]["val_curve"] for seed in rs]
        steps = [s for s, _ in vc[0]]
        mean = np.mean([[v for _, v in c] for c in vc], axis=0)
        ax.plot(steps, mean, "o-" if arm in ("dense", "topk", "rf") else "--", ms=3,
                label=f"{arm} ({len(rs)} seeds)")
    ax.axhline(entropy, color="k", ls=":", label="unigram entropy of the validation text")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.set_title("Validation loss during pre-training (mean over seeds)")
    ax.legend(fontsize=8)
    save(fig, path)


def control_figure(curves: dict, mus: dict, target: float, key: str, path, log: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for mu, arm in mus.items():
        for k, c in sorted(curves.items()):
            if k.startswith(arm + "_s"):
                y = effects.smooth(c[key]) if key == "rho" else np.asarray(c[key])
                ax.plot(np.arange(len(y)) + 1, y, lw=1, label=f"mu={mu} ({k})")
    if key == "rho":
        ax.axhline(target, color="k", ls=":", label=f"target rho* = {target}")
        ax.set_ylabel(f"density rho(t) ({effects.SMOOTH}-step mean)")
    else:
        ax.set_ylabel("lambda(t)")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.legend(fontsize=7)
    save(fig, path)


def spread_figure(mu_rows: dict, loads: dict, mus: dict, path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = list(mu_rows)
    x = np.arange(len(labels))
    for off, key, name in ((-0.2, "expert_load_cv", "expert-load CV"), (0.2, "token_compute_cv", "token-compute CV")):
        a1.bar(x + off, [mu_rows[m][key] or 0 for m in labels], width=0.4, label=name)
    a1.set_xticks(x, [f"mu={m}" for m in labels])
    a1.set_title("Spread across experts vs across tokens")
    a1.legend(fontsize=8)
    for mu, arm in mus.items():
        for k, load in sorted(loads.items()):
            if k.startswith(arm + "_s"):
                a2.plot(sorted(load, reverse=True), lw=1, label=f"mu={mu} ({k})")
    a2.set_xlabel("layer x expert, by load")
    a2.set_ylabel("fraction of tokens activating it")
    a2.set_title("Expert load on validation")
    a2.legend(fontsize=7)
    save(fig, path)


def threshold_figure(r4: dict, sweep_runs: dict, path) -> None:
    """Loss against validation density (each run at its own thetas), the trained theta's point marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    factors = [str(float(f)) for f in r4["density_factors"]]
    for k, r in sorted(sweep_runs.items()):
        cells = [r["sweep"][f] for f in factors]
        ax.plot([c["density"] for c in cells], [c["val_loss"] for c in cells], "o-", ms=3, lw=0.8, alpha=0.7,
                label=k)
        trained = r["sweep"]["1.0"]
        ax.plot(trained["density"], trained["val_loss"], "k*", ms=8)
    ax.plot(r4["density"], r4["val_loss"], "ks--", ms=4, label="mean (star: trained theta)")
    ax.set_xscale("log")
    ax.set_xlabel("density on validation (inference theta from score quantiles)")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.legend(fontsize=8)
    save(fig, path)


def run(ctx: StageContext) -> dict:
    runs = read_metrics(ctx.inputs["evaluate"])["runs"]
    curves = read_json(ctx.inputs["evaluate"] / "curves.json")
    loads = read_json(ctx.inputs["evaluate"] / "expert_load.json")
    sweep = read_metrics(ctx.inputs["threshold"])["runs"]
    rf = ctx.params["arms"]["rf"]
    mus = mu_arms(ctx.params)
    m = effects.decide(runs, sweep, mus, rf, curves, unigram_entropy(ctx.inputs["data"]))
    loss_figure(runs, curves, m["unigram_entropy"], ctx.out / "val_loss.png")
    control_figure(curves, mus, rf["density_target"], "rho", ctx.out / "density.png")
    control_figure(curves, mus, rf["density_target"], "lambda", ctx.out / "lambda.png", log=True)
    spread_figure(m["r3"]["mu"], loads, mus, ctx.out / "spread.png")
    threshold_figure(m["r4"], sweep, ctx.out / "threshold.png")
    method = effects.method_section(rf, ctx.params["threshold"]["density_factors"],
                                    read_metrics(ctx.inputs["data"])["validation_dedup"])
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, runs, method))
    return m


if __name__ == "__main__":
    main(run)
