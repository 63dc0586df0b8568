"""Stage 4: held-out quality of each pruned model against the dense one (same executor), per
validation window so that the analysis can resample windows (paired: every family sees the same).
Dynamic depth also records the share of tokens each layer executed on that text: the latency job
times its routers at these same measured rates."""
import torch
import torch.nn.functional as F

from repro.core import flops
from repro.core.io import read_metrics
from repro.core.stage import StageContext, main
from repro.data.corpus import validation_windows
from repro.models.causal_lm import device
from repro.papers.pruninginfersim import method


@torch.no_grad()
def quality(model, batches) -> dict:
    """Mean next-token loss (nats) of every window (their mean is the token-weighted loss) and,
    with routers, each layer's executed share of the tokens, from the same forward passes."""
    losses, rates = [], []
    routed = model.blocks[0].router is not None
    for batch in batches:
        logits, _ = model(batch)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="none")
        losses += nll.view(batch.shape[0], -1).mean(1).tolist()
        if routed:
            rates.append([float(b.last_exec.float().mean()) for b in model.blocks])
    out = {"val_loss": sum(losses) / len(losses), "window_losses": losses}
    if routed:  # batches are equally sized, so the mean over batches is the mean over tokens
        out["exec_rate_per_layer"] = [sum(r) / len(r) for r in zip(*rates)]
        out["exec_rate"] = sum(out["exec_rate_per_layer"]) / len(model.blocks)
    out["gemm_flops"] = sum(g.flops for g in flops.gemms_of(model, batches[0]))
    return out


def run(ctx: StageContext) -> dict:
    family = ctx.wildcards["family"]
    ev = ctx.params["evaluate"]
    batches = validation_windows(ctx.inputs["data"], ev["windows"], ev["seq_len"], ev["batch_size"], device())
    dense = quality(method.PrunableLlama.from_checkpoint(ctx.inputs["model"] / "model").to(device()), batches)
    pruned = read_metrics(ctx.inputs["pruned"])["sparsities"]
    results = {}
    for s in method.sparsities_for(family, ctx.params["prune"]["sparsities"]):
        q = quality(method.load_pruned(ctx.inputs["pruned"] / f"s{s}", device()), batches)
        q["quality_loss"] = (q["val_loss"] - dense["val_loss"]) / dense["val_loss"]
        q["flops_removed"] = 1 - q["gemm_flops"] / dense["gemm_flops"]
        if "svd_energy" in pruned[str(s)]:  # low rank: the singular-value energy its rank kept
            q["svd_energy"] = pruned[str(s)]["svd_energy"]
        results[str(s)] = q
    return {"family": family, "seed": int(ctx.wildcards["seed"]), "dense": dense, "sparsities": results}


if __name__ == "__main__":
    main(run)
