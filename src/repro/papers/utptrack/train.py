"""Stage 2: train the un-pruned one-stream tracker (from scratch, or from a pretrained HF ViT at `paper`)."""
import statistics

import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.video import Videos
from repro.papers.utptrack.fit import fit
from repro.papers.utptrack.method import build_tracker, save_tracker


def load_split(data, name: str) -> Videos:
    import datasets

    return Videos(datasets.load_from_disk(str(data / "videos"))[name])


def tail_mean(values: list[float]) -> float | None:
    """Mean of the last 10% of per-step values (one step is too noisy to report)."""
    return statistics.mean(values[-max(1, len(values) // 10):]) if values else None


def run(ctx: StageContext) -> dict:
    p = ctx.params
    torch.manual_seed(ctx.seed)
    model = build_tracker(p["model"], p["crops"], p["loss"])
    losses = fit(model, load_split(ctx.inputs["data"], "train"), p["crops"], p["train"], seed=ctx.seed,
                 desc="train baseline")
    save_tracker(model, ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    return {"steps": p["train"]["steps"], "params": sum(q.numel() for q in model.parameters()),
            "train_loss_first": tail_mean(losses[: max(1, len(losses) // 10)]),
            "train_loss_last": tail_mean(losses)}


if __name__ == "__main__":
    main(run)
