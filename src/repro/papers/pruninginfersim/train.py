"""Stage 2: train the quality model (random init, byte-level) on the corpus; held-out loss.

The amended design trains until the held-out loss flattens (a model that has barely learned keeps
most of its weights' energy in few directions, and low-rank pruning is then nearly free): every
`val_every` steps the held-out loss is measured on the evaluation windows, and the curve and its
last relative drop go to the metrics so the report can show that training had flattened."""
import math

import torch

from repro.core.io import atomic_write_json, read_json
from repro.core.stage import StageContext, main
from repro.data.corpus import load_tokens, random_windows, validation_windows
from repro.models.causal_lm import build_causal_lm, count_parameters, device, save_checkpoint
from repro.models.training import mean_loss, tail_mean, train_causal_lm


def run(ctx: StageContext) -> dict:
    data = ctx.inputs["data"]
    t = ctx.params["train"]
    vocab = read_json(data / "meta.json")["vocab_size"]
    model = build_causal_lm(ctx.params["quality_model"], vocab_size=vocab)
    train_tokens = load_tokens(data, "train")
    ev = ctx.params["evaluate"]
    batches = validation_windows(data, ev["windows"], ev["seq_len"], ev["batch_size"], device())
    held_out = lambda: mean_loss(lambda b: model(input_ids=b, labels=b).loss, batches)  # noqa: E731
    curve = []

    def after_step(step: int) -> None:
        if (step + 1) % t["val_every"] == 0 or step + 1 == t["steps"]:
            model.eval()
            with torch.no_grad():
                curve.append({"step": step + 1, "val_loss": held_out()})
            model.train()

    losses = train_causal_lm(
        model, lambda step: random_windows(train_tokens, t["batch_size"], t["seq_len"], ctx.seed * 1_000_003 + step),
        steps=t["steps"], lr=t["lr"], warmup=t["warmup"], weight_decay=t["weight_decay"], desc="train",
        after_step=after_step)
    val = held_out()
    save_checkpoint(model, ctx.out / "model")
    atomic_write_json(ctx.out / "loss_curve.json", [{"step": i, "loss": v} for i, v in enumerate(losses)])
    # flatness: the held-out loss's relative drop over the last val_every steps (0 = flat)
    last_drop = (curve[-2]["val_loss"] - curve[-1]["val_loss"]) / curve[-2]["val_loss"] if len(curve) > 1 else None
    return {"params_non_embedding": count_parameters(model), "steps": t["steps"],
            "train_loss_first": tail_mean(losses[: max(1, len(losses) // 10)]),
            "train_loss_last": tail_mean(losses),
            "val_loss": val, "val_bits_per_token": val / math.log(2),
            "val_curve": curve, "val_last_relative_drop": last_drop}


if __name__ == "__main__":
    main(run)
