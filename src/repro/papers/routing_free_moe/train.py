"""Stage 2: pre-train one arm (dense, top-k MoE, routing-free MoE at some mu) for one seed.

Every arm sees the same batches in the same order for a given seed, and starts from the same
attention/embedding weights (the backbone is built before the FFNs are swapped in).
"""
import torch

from repro.core.io import atomic_write_json, read_json
from repro.core.stage import StageContext, main
from repro.data.corpus import load_tokens, random_windows, validation_windows
from repro.models.causal_lm import count_parameters, device
from repro.models.training import mean_loss, tail_mean, train_causal_lm
from repro.papers.routing_free_moe._arms import arm_spec
from repro.papers.routing_free_moe.method import (active_ffn_params, build_model, calibrate_biases, make_aux,
                                                  save_model)


def run(ctx: StageContext) -> dict:
    data = ctx.inputs["data"]
    t = ctx.params["train"]
    name, seed = ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    arm = arm_spec(ctx.params["arms"], name)
    run_seed = ctx.seed * 1000 + seed
    torch.manual_seed(run_seed)
    model = build_model(ctx.params["model"], arm, vocab_size=read_json(data / "meta.json")["vocab_size"])
    aux = make_aux(model, arm)
    train_tokens = load_tokens(data, "train")
    batch = lambda step: random_windows(train_tokens, t["batch_size"], t["seq_len"], run_seed * 1_000_003 + step)  # noqa: E731
    if arm.get("init_density"):  # routing-free: start at the target density (the first batch sets b_e)
        calibrate_biases(model, batch(0), arm["init_density"])
    # accelerate puts the model on the GPU when there is one; the validation windows go with it
    val = validation_windows(data, t["val_windows"], t["seq_len"], t["batch_size"], device())
    val_curve = []

    def after_step(step: int) -> None:
        if aux:
            aux.after_step(step)
        if (step + 1) % t["val_every"] == 0 or step + 1 == t["steps"]:
            model.eval()
            val_curve.append([step + 1, mean_loss(lambda b: model(input_ids=b, labels=b).loss, val)])
            model.train()

    losses = train_causal_lm(
        model, batch, steps=t["steps"], lr=arm["lr"], warmup=t["warmup"], weight_decay=t["weight_decay"],
        desc=f"train {name} s{seed}", aux_loss=aux.loss if aux else None, after_step=after_step)
    save_model(model, arm, ctx.out / "model")
    history = {"train_loss": losses, "val_curve": val_curve, **(aux.history if aux else {})}
    atomic_write_json(ctx.out / "history.json", history)
    cfg = model.config
    metrics = {"arm": name, "kind": arm["kind"], "seed": seed, "steps": t["steps"],
               "params_non_embedding": count_parameters(model),
               "active_ffn_params_per_layer": active_ffn_params(arm, cfg.hidden_size, cfg.intermediate_size),
               "train_loss_last": losses[-1] if losses else None,
               "val_loss_last": val_curve[-1][1] if val_curve else None}
    if history.get("rho"):
        # rho at the end: mean of the last 10% of steps
        metrics.update(mu=arm["mu"], rho_final=tail_mean(history["rho"]),
                       lambda_final=history["lambda"][-1])
    return metrics


if __name__ == "__main__":
    main(run)
