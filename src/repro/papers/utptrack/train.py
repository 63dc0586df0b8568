"""Stage 2: train the un-pruned one-stream tracker (from scratch, or from a pretrained HF ViT at `paper`).
One run, with the workflow's seed: every variant and fine-tuning seed starts from it."""
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.training import tail_mean
from repro.papers.utptrack._fit import fit, load_split
from repro.papers.utptrack.method import build_tracker, save_tracker


def run(ctx: StageContext) -> dict:
    p = ctx.params
    torch.manual_seed(ctx.seed)
    model = build_tracker(p["model"], p["crops"], p["loss"])
    losses = fit(model, load_split(ctx.inputs["data"], "train"), p["crops"], p["train"], stream=(ctx.seed,),
                 desc="train baseline")
    save_tracker(model, ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    return {"steps": p["train"]["steps"], "params": sum(q.numel() for q in model.parameters()),
            "train_loss_first": tail_mean(losses[: max(1, len(losses) // 10)]),
            "train_loss_last": tail_mean(losses)}


if __name__ == "__main__":
    main(run)
