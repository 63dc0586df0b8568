"""Stage 3: fine-tune the trained tracker with one variant's pruning for one seed, on the public
code's schedule: the keep rates warm up from 1.0 (cosine to the target, reached at `keep_warmup.end`,
about a third of the steps, so most steps train at the target ratio) under a constant learning rate
with one step drop late (`lr_drop`). The un-pruned `baseline` variant gets the same steps, so every
variant is compared with a tracker trained exactly as long. The seed draws the batches: all variants
of one seed see the same batches (the arms are paired by seed), each seed its own.

Every `validation.every` steps (and before the first) the loss on fixed batches of the validation
videos is measured at the variant's target keep ratios, whatever the warm-up stands at: the curve
that shows whether fine-tuning ran long enough for the pruned tracker to settle."""
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.training import tail_mean
from repro.papers.utptrack._fit import batch_maker, fit, load_split, mean_loss
from repro.papers.utptrack.method import load_tracker, save_tracker, variant_pruning, warmup_weight


def validation_curve(model, batches: list[dict], steps: int, every: int):
    """(record, after_step): record(step) appends (step, loss at the target keep ratios) to the curve."""
    curve = []

    def record(step: int) -> None:
        warm, model.warm = model.warm, 0.0
        curve.append((step, mean_loss(model, batches)))
        model.warm = warm

    def after_step(step: int) -> None:
        if (step + 1) % every == 0 or step + 1 == steps:
            record(step + 1)

    return curve, record, after_step


def run(ctx: StageContext) -> dict:
    p, name, seed = ctx.params, ctx.wildcards["variant"], int(ctx.wildcards["seed"])
    ft, val = p["finetune"], p["finetune"]["validation"]
    torch.manual_seed(seed)
    model = load_tracker(ctx.inputs["model"] / "model")
    model.pruning = variant_pruning(model, p["variants"], name)
    warm = ft["keep_warmup"]
    history = {"warm": []}

    def before_step(step: int) -> None:
        model.warm = warmup_weight(step, ft["steps"], warm["start"], warm["end"])
        history["warm"].append(model.warm)

    # validation batches: the workflow seed and a 2 (apart from training streams), the same for every
    # variant and seed, so the curves compare
    next_val = batch_maker(model, load_split(ctx.inputs["data"], "val"), p["crops"], ft["batch_size"], (ctx.seed, 2))
    curve, record, after_step = validation_curve(model, [next_val(i) for i in range(val["batches"])], ft["steps"],
                                                 val["every"])
    record(0)
    # the workflow seed, a 1 that sets fine-tuning apart from pre-training's stream, the run's seed
    losses = fit(model, load_split(ctx.inputs["data"], "train"), p["crops"], ft, stream=(ctx.seed, 1, seed),
                 desc=f"finetune {name} seed {seed}", before_step=before_step, after_step=after_step)
    model.warm = 0.0
    save_tracker(model, ctx.out / "model")
    atomic_write_json(ctx.out / "pruning.json", {"blocks": model.pruning.blocks, "keep": model.pruning.keep,
                                                 "token_type": model.pruning.token_type})
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses, "val": curve, **history})
    return {"variant": name, "seed": seed, "steps": ft["steps"], "keep": model.pruning.keep,
            "train_loss_last": tail_mean(losses), "val_loss_first": curve[0][1], "val_loss_last": curve[-1][1]}


if __name__ == "__main__":
    main(run)
