"""Stage 7: claims H1-H3 decided from every (arm, seed) evaluation, the vanilla arm's A/A seeds, the
speed pairs and the layer analysis; controls, tables, figures."""
import numpy as np

from repro.core.io import atomic_write_text, read_metrics
from repro.core.stage import StageContext, main
from repro.papers.hidrop import effects
from repro.report.figures import plt, save

DESIGN = [
    "## Design (what the spec leaves open is chosen here)", "",
    "- Data: synthetic scenes (repro.data.scenes), one question per image, the kinds in `data.source.kinds` in "
    "equal shares (mini: attribute and relation; existence with POPE's random negatives sat at chance and counting "
    "at the majority answer in every arm on validation), one-word answers; fixed test questions.",
    "- Model: a tiny LLaVA (patch embedder + learned grid positions -> 2-layer GELU projector -> 12-layer Llama "
    "decoder). Sequence [<bos>] [visual tokens] [question]; the answer is predicted at the question's last token, "
    "which is also the query row that ranks visual tokens (the public code's row just before the answer span).",
    "- Pre-training (shared by every arm): every weight, every visual token, captions (objects in reading order) and "
    "questions in each batch. LLaVA trains only the projector here because its LLM is pre-trained; ours is not.",
    "- Fine-tuning: every arm from that model, the same steps, learning rate and batches per seed, every weight "
    "trained under the arm's schedule; the answer token's cross-entropy is the loss.",
    "- HiDrop: late injection (text at the positions it has with the image present, the projector outputs inserted "
    "before the entry layer at positions 1..N), ranking with the next layer's norm, q/k and RoPE (query row's "
    "softmax over all keys, heads averaged, image columns sliced out, no renormalisation), hard top-k on detached "
    "scores in original order with persistent positions, early exit. Scaled schedule: one full-token layer (two "
    "do not fit 12 layers at ~90% compression), then a concave pyramid, exit at 3/4 of the depth.",
    "- PDrop: visual tokens from layer 0, geometric keep ratios at equally spaced stages after the first drop, "
    "positions re-indexed after each drop, ranked by the same query-row score; its first drop is at layer 1 and "
    "lambda is the smallest that spends at least the compared HiDrop arm's budget. `pdrop_persistent` keeps "
    "the original positions (schedule vs positions).",
    "- Ablations, trained like the rest: `no_late` (visual tokens from layer 0: HiDrop's token counts moved to "
    "start there, so the budget matches), `no_exit` (the last token stays to the end: a larger budget, labelled "
    "unmatched), `linear` (keep counts falling linearly, same total). Blind: no image. Every ablation's measured "
    "budget is shown beside its difference; one more than 5% off HiDrop's is labelled unmatched.",
    "- Average visual tokens per layer are counted in the forward over all layers, zero-token layers included.",
    ""]


def accuracy_budget_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in m["arms"].items():
        a = r["accuracy"]
        ax.errorbar(r["average"], a["mean"], yerr=a["std"], fmt="o", capsize=3,
                    color="C0" if name.startswith("hidrop") else "C1" if name.startswith("pdrop") else "k")
        ax.annotate(name, (r["average"], a["mean"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    for key, colour in (("hidrop", "C0"), ("pdrop", "C1")):
        pts = sorted((r[f"budget_{key}"], np.mean(r[f"accuracy_{key}"]["samples"])) for r in m["h3"]["sweep"])
        ax.plot(*zip(*pts), color=colour, lw=1, label=f"{key} sweep")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("average visual tokens per layer (measured)")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against the visual-token budget")
    save(fig, path)


def tokens_figure(m: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in m["arms"].items():
        if name != "blind":
            ax.step(range(len(r["per_layer"])), r["per_layer"], where="mid", label=f"{name} ({r['average']:.1f})")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("visual tokens processed (counted in the forward)")
    ax.legend(fontsize=7)
    save(fig, path)


def layers_figure(lay: dict, path) -> None:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(lay["visual_attention"], marker="o")
    a1.set_xlabel("decoder layer")
    a1.set_ylabel("query row's attention mass on visual tokens")
    a2.plot(lay["visual_change"], marker="o", label="visual tokens")
    a2.plot(lay["text_change"], marker="o", label="text tokens")
    a2.set_xlabel("decoder layer")
    a2.set_ylabel("1 - cos(layer input, layer output)")
    a2.legend()
    fig.suptitle("Vanilla arm, mean over seeds")
    save(fig, path)


def run(ctx: StageContext) -> dict:
    p = ctx.params
    arms, a = list(p["arms"]), p["analysis"]
    claimed = {a["roles"][r] for r in effects.CLAIM_ROLES}
    seeds = lambda n: p["seeds"] if n in claimed else p["descriptive_seeds"]  # noqa: E731
    if not set(p["descriptive_seeds"]) <= set(p["seeds"]):
        raise ValueError(f"descriptive_seeds {p['descriptive_seeds']} must be a subset of seeds {p['seeds']}")
    evals = {n: {s: read_metrics(ctx.inputs[f"evaluate_{n}_seed{s}"]) for s in seeds(n)} for n in arms}
    vanilla = a["roles"]["vanilla"]
    aa = {vanilla: {s: read_metrics(ctx.inputs[f"evaluate_{vanilla}_seed{s}"]) for s in p["aa_seeds"]}}
    layers = read_metrics(ctx.inputs["layers"])
    training = {"pretrain": p["pretrain"]["steps"], "finetune": p["finetune"]["steps"]}
    m = effects.decide(evals, read_metrics(ctx.inputs["speed"]), a["roles"], a["sweep"], layers, aa, training)
    accuracy_budget_figure(m, ctx.out / "accuracy_budget.png")
    tokens_figure(m, ctx.out / "tokens_per_layer.png")
    layers_figure(m["layers"], ctx.out / "layers.png")
    atomic_write_text(ctx.out / "tables.md", effects.report_tables(m, evals, DESIGN, aa))
    return m


if __name__ == "__main__":
    main(run)
