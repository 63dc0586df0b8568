"""Training one arm on one task: the loop pretrain and train share (the arm's objective on the
task's examples), then the checkpoint and the validation NLL under full and MSM views. The training
seed orders the examples and draws the schedules; the validation views are drawn from the job's
global seed, so every arm and seed is measured on the same views."""
import random
import statistics

import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext
from repro.models.causal_lm import count_parameters, save_checkpoint
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.proactivellm._task import Task, batch
from repro.papers.proactivellm.method import Objective, lm_forward, save_head, schedule, token_nll, training_batch


@torch.no_grad()
def validation_nll(lm, examples, tok, kind: str, eos_full_source: bool, offset: int, seed: int, size: int) -> float:
    """Target NLL under full visibility (`full`) or a fixed random MSM schedule (`msm`)."""
    rng, losses = random.Random(seed), []
    for i in range(0, len(examples), size):
        chunk = examples[i:i + size]
        vis = [schedule(kind, len(e.units), e.rows, rng, eos_full_source=eos_full_source) for e in chunk]
        b = batch(chunk, vis, tok, offset)
        logits = lm_forward(lm, b["input_ids"], b["attention_mask"], b["position_ids"]).logits
        losses.append(token_nll(logits, b["labels"]).item())
    return statistics.mean(losses)


def fit(ctx: StageContext, lm, arm: dict, t: dict, desc: str, out, seed: int) -> dict:
    """Train `lm` with `arm`'s objective under the `t` settings and `seed`; save it under `out`; its
    metrics."""
    name = ctx.wildcards["task"]
    cfg, offset = ctx.params["tasks"][name], ctx.params["streaming"]["target_offset"]
    task = Task(ctx.inputs["data"], cfg["eos_full_source"])
    tok, train = task.tokenizer, task.examples("train")
    objective = Objective(lm, arm)
    order, schedules = random.Random(seed), random.Random(seed + 1)
    losses = train_causal_lm(
        objective, lambda step: training_batch(order.sample(train, t["batch_size"]), arm, tok, schedules,
                                               cfg["eos_full_source"], offset),
        steps=t["steps"], lr=t["lr"], warmup=t["warmup"], weight_decay=t["weight_decay"], desc=desc)
    lm.eval()
    save_checkpoint(lm, out / "model")
    save_head(objective, out / "head")
    atomic_write_json(out / "loss_curve.json", losses)
    val = task.examples("validation")
    nll = {view: validation_nll(lm, val, tok, view, cfg["eos_full_source"], offset, ctx.seed, t["batch_size"])
           for view in ("full", "msm")}
    return {"task": name, "kind": arm["kind"], "seed": seed, "steps": t["steps"], "params_non_embedding": count_parameters(lm),
            "train_loss_last": tail_mean(losses),
            "val_nll_full_view": nll["full"], "val_nll_msm_view": nll["msm"]}
