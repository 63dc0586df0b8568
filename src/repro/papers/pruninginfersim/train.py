"""Stage 2: train the quality model (random init, byte-level) on the corpus; held-out loss."""
import math

from repro.core.io import atomic_write_json, read_json
from repro.core.stage import StageContext, main
from repro.data.corpus import load_tokens, random_windows, validation_windows
from repro.models.causal_lm import build_causal_lm, count_parameters, device, save_checkpoint
from repro.models.training import mean_loss, train_causal_lm


def run(ctx: StageContext) -> dict:
    data = ctx.inputs["data"]
    t = ctx.params["train"]
    vocab = read_json(data / "meta.json")["vocab_size"]
    model = build_causal_lm(ctx.params["quality_model"], vocab_size=vocab)
    train_tokens = load_tokens(data, "train")
    losses = train_causal_lm(
        model, lambda step: random_windows(train_tokens, t["batch_size"], t["seq_len"], ctx.seed * 1_000_003 + step),
        steps=t["steps"], lr=t["lr"], warmup=t["warmup"], weight_decay=t["weight_decay"], desc="train")
    ev = ctx.params["evaluate"]
    batches = validation_windows(data, ev["windows"], ev["seq_len"], ev["batch_size"], device())
    val = mean_loss(lambda b: model(input_ids=b, labels=b).loss, batches)
    save_checkpoint(model, ctx.out / "model")
    atomic_write_json(ctx.out / "loss_curve.json", [{"step": i, "loss": v} for i, v in enumerate(losses)])
    return {"params_non_embedding": count_parameters(model), "steps": t["steps"],
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "val_loss": val, "val_bits_per_token": val / math.log(2)}


if __name__ == "__main__":
    main(run)
