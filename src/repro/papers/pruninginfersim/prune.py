"""Stage 3: prune the trained quality model with one family at every sparsity of the sweep. The seed
wildcard varies what pruning trains (dynamic depth's routers: initialisation and batches); the
other families are fixed by the model and the calibration data, so they run on one seed."""
import torch

from repro.core.stage import StageContext, main
from repro.data.corpus import fixed_windows, load_tokens, random_windows
from repro.models.causal_lm import device
from repro.papers.pruninginfersim import method


def calibration_batches(tokens, c: dict) -> list[torch.Tensor]:
    return [b.to(device()) for b in fixed_windows(tokens, c["batches"] * c["batch_size"], c["seq_len"],
                                                  c["batch_size"])]


def run(ctx: StageContext) -> dict:
    family, run_seed = ctx.wildcards["family"], ctx.seed * 1000 + int(ctx.wildcards["seed"])
    p = ctx.params["prune"]
    tokens = load_tokens(ctx.inputs["data"], "train")
    base = method.PrunableLlama.from_checkpoint(ctx.inputs["model"] / "model").to(device())
    calib = calibration_batches(tokens, p["calibration"])
    r = p["router"]
    metrics = {}
    for s in method.sparsities_for(family, p["sparsities"]):
        torch.manual_seed(run_seed)  # the routers' initialisation
        pruned, info = method.apply_family(
            base, family, s, calib=calib, p=p,
            router_batches=lambda step: random_windows(tokens, r["batch_size"], r["seq_len"],
                                                       run_seed * 7919 + step).to(device()))
        method.save_pruned(pruned, ctx.out / f"s{s}")
        entry = {"parameters": sum(t.numel() for t in pruned.parameters())}
        if family == "static_depth":
            entry["removed_attention"], entry["removed_ffn"] = info["attn"], info["mlp"]
        if family == "lowrank":
            entry["svd_energy"] = info["svd_energy"]
        if family == "dynamic_depth":
            entry["router_final_mean_exec"] = info["router_history"][-1]["mean_exec"] if info["router_history"] else None
        metrics[str(s)] = entry
    return {"family": family, "seed": int(ctx.wildcards["seed"]), "sparsities": metrics}


if __name__ == "__main__":
    main(run)
