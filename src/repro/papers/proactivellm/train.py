"""Stage 3: fine-tune every arm (V0 full, V1 wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label head)
on one task from the shared backbone, one after the other in one job (the arms are small; one job
per arm would spend more on start-up than on training at the smoke profile). Every arm starts from
the same weights and sees the same examples in the same order for the same number of steps; only
the visibility schedules and the loss differ. Output: <arm>/model, <arm>/loss_curve.json."""
import random
import statistics
import time

import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.causal_lm import count_parameters, load_checkpoint, save_checkpoint
from repro.models.training import train_causal_lm
from repro.papers.proactivellm.method import (Objective, lm_forward, save_head, schedule, token_nll,
                                              training_batch)
from repro.papers.proactivellm.task import Task, batch


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


def fit(ctx: StageContext, lm, arm: dict, t: dict, desc: str, out) -> dict:
    """Train `lm` with `arm`'s objective under the `t` settings; save it under `out`; its metrics."""
    name = ctx.wildcards["task"]
    cfg, offset = ctx.params["tasks"][name], ctx.params["streaming"]["target_offset"]
    task = Task(ctx.inputs["data"], cfg["eos_full_source"])
    tok, train = task.tokenizer, task.examples("train")
    objective = Objective(lm, arm)
    order, schedules = random.Random(ctx.seed), random.Random(ctx.seed + 1)
    losses = train_causal_lm(
        objective, lambda step: training_batch(order.sample(train, t["batch_size"]), arm, tok, schedules,
                                               cfg["eos_full_source"], offset),
        steps=t["steps"], lr=t["lr"], warmup=t["warmup"], weight_decay=t["weight_decay"], desc=desc)
    lm.eval()
    save_checkpoint(lm, out / "model")
    save_head(objective, out / "model")
    atomic_write_json(out / "loss_curve.json", losses)
    val = task.examples("validation")
    nll = {view: validation_nll(lm, val, tok, view, cfg["eos_full_source"], offset, ctx.seed, t["batch_size"])
           for view in ("full", "msm")}
    tail = max(1, len(losses) // 10)
    return {"task": name, "kind": arm["kind"], "steps": t["steps"], "params_non_embedding": count_parameters(lm),
            "train_loss_last": statistics.mean(losses[-tail:]) if losses else None,
            "val_nll_full_view": nll["full"], "val_nll_msm_view": nll["msm"]}


def run(ctx: StageContext) -> dict:
    arms = {}
    for name, arm in sorted(ctx.params["arms"].items()):
        torch.manual_seed(ctx.seed)  # the V4 head's initialisation
        lm = load_checkpoint(ctx.inputs["backbone"] / "model", ctx.params["model"].get("attn_implementation"))
        start = time.perf_counter()
        arms[name] = fit(ctx, lm, arm, ctx.params["train"], f"train {ctx.wildcards['task']}/{name}", ctx.out / name)
        arms[name]["wall_s"] = time.perf_counter() - start
    return {"task": ctx.wildcards["task"], "arms": arms}


if __name__ == "__main__":
    main(run)
