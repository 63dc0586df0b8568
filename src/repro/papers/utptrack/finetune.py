"""Stage 3: fine-tune the trained tracker with one variant's pruning for one seed, keep rates warming
up from 1.0 (cosine to the target). The un-pruned `baseline` variant gets the same steps, so every
variant is compared with a tracker trained exactly as long. The seed draws the batches: all variants
of one seed see the same batches (the arms are paired by seed), each seed its own."""
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.training import tail_mean
from repro.papers.utptrack._fit import fit, load_split
from repro.papers.utptrack.method import load_tracker, save_tracker, variant_pruning, warmup_weight


def run(ctx: StageContext) -> dict:
    p, name, seed = ctx.params, ctx.wildcards["variant"], int(ctx.wildcards["seed"])
    ft = p["finetune"]
    torch.manual_seed(seed)
    model = load_tracker(ctx.inputs["model"] / "model")
    model.pruning = variant_pruning(model, p["variants"], name)
    warm = ft["keep_warmup"]
    history = {"warm": []}

    def before_step(step: int) -> None:
        model.warm = warmup_weight(step, ft["steps"], warm["start"], warm["end"])
        history["warm"].append(model.warm)

    # the workflow seed, a 1 that sets fine-tuning apart from pre-training's stream, the run's seed
    losses = fit(model, load_split(ctx.inputs["data"], "train"), p["crops"], ft, stream=(ctx.seed, 1, seed),
                 desc=f"finetune {name} seed {seed}", before_step=before_step)
    model.warm = 0.0
    save_tracker(model, ctx.out / "model")
    atomic_write_json(ctx.out / "pruning.json", {"blocks": model.pruning.blocks, "keep": model.pruning.keep,
                                                 "token_type": model.pruning.token_type})
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses, **history})
    return {"variant": name, "seed": seed, "steps": ft["steps"], "keep": model.pruning.keep,
            "train_loss_last": tail_mean(losses)}


if __name__ == "__main__":
    main(run)
