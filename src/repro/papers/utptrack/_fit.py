"""Batches of (template, dynamic template, search) crops and the training that train and finetune
share, with the two learning-rate schedules: pre-training warms up and decays on a cosine
(repro.models.training.cosine_lr); fine-tuning follows the public code (SUTrack's step scheduler): a
constant rate, multiplied by `lr_drop.factor` from `lr_drop.at` x steps on."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from repro.data.video import Videos, training_sample
from repro.models.centre_head import xywh_to_cxcywh
from repro.models.training import cosine_lr, train_causal_lm
from repro.papers.utptrack.method import OneStreamTracker, foreground_fraction


def load_split(data, name: str) -> Videos:
    import datasets

    return Videos(datasets.load_from_disk(str(data / "videos"))[name])


def to_images(crops: list[np.ndarray]) -> torch.Tensor:
    """[N, H, W, 3] in [0, 1] -> [N, 3, H, W] in [-1, 1] (the normalisation HF ViTs use)."""
    return (torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2) - 0.5) / 0.5


def inputs(model: OneStreamTracker, static, dynamic, search, static_box, dynamic_box) -> dict:
    """Model inputs from crops and template boxes (crop pixels)."""
    fg = lambda b: foreground_fraction(torch.from_numpy(np.stack(b)), model.template_size, model.patch)  # noqa: E731
    return {"search": to_images(search), "static": to_images(static), "dynamic": to_images(dynamic),
            "fg_static": fg(static_box), "fg_dynamic": fg(dynamic_box)}


def batch_maker(model: OneStreamTracker, videos: Videos, crops: dict, batch_size: int,
                stream: Sequence[int]) -> Callable[[int], dict]:
    """next_batch(step): a batch that depends only on (stream, step), whatever ran before."""

    def next_batch(step: int) -> dict:
        rng = np.random.default_rng([*stream, step])
        s = [training_sample(videos, rng, crops) for _ in range(batch_size)]
        col = lambda k: [x[k] for x in s]  # noqa: E731
        batch = inputs(model, col("static"), col("dynamic"), col("search"), col("static_box"), col("dynamic_box"))
        batch["target"] = xywh_to_cxcywh(torch.from_numpy(np.stack(col("search_box"))), model.search_size)
        return batch

    return next_batch


def lr_factor(step: int, t: dict) -> float:
    """Learning-rate multiplier at `step`: the step drop when `t` has `lr_drop`, else warm-up + cosine."""
    if "lr_drop" in t:
        return t["lr_drop"]["factor"] if step >= t["lr_drop"]["at"] * t["steps"] else 1.0
    return cosine_lr(step, t["steps"], t["warmup"])


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def fit(model: OneStreamTracker, videos: Videos, crops: dict, t: dict, stream: Sequence[int], desc: str,
        before_step: Callable[[int], None] | None = None,
        after_step: Callable[[int], None] | None = None) -> list[float]:
    """Train for t.steps batches drawn from the random `stream` (seed entropy) with the shared loop
    (AdamW under accelerate) at `lr_factor`'s schedule; returns the loss per step.
    `before_step(step)` sets per-step state (the keep-rate warm-up) before the step's forward,
    `after_step(step)` runs after each update (validation)."""
    next_batch = batch_maker(model, videos, crops, t["batch_size"], stream)

    def batch(step: int) -> dict:
        if before_step:
            before_step(step)
        return next_batch(step)

    model.to(device()).train()
    return train_causal_lm(model, batch, steps=t["steps"], lr=t["lr"], weight_decay=t["weight_decay"],
                           grad_clip=t["grad_clip"], desc=desc, after_step=after_step,
                           schedule=lambda s: lr_factor(s, t))


@torch.no_grad()
def mean_loss(model: OneStreamTracker, batches: list[dict]) -> float:
    """Mean loss over fixed batches in eval mode at the model's current pruning and warm-up; the
    training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    loss = float(np.mean([model(**{k: v.to(device()) for k, v in b.items()}).loss.item() for b in batches]))
    model.train(was_training)
    return loss
