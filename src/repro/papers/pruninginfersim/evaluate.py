"""Stage 4: held-out quality of each pruned model against the dense one (same executor), per
validation window so that the analysis can resample windows (paired: every family sees the same)."""
import torch
import torch.nn.functional as F

from repro.core import flops
from repro.core.stage import StageContext, main
from repro.data.corpus import validation_windows
from repro.models.causal_lm import device
from repro.papers.pruninginfersim import method


@torch.no_grad()
def window_losses(model, batches) -> list[float]:
    """Mean next-token loss (nats) of every window; their mean is the token-weighted loss."""
    out = []
    for batch in batches:
        logits, _ = model(batch)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="none")
        out += nll.view(batch.shape[0], -1).mean(1).tolist()
    return out


@torch.no_grad()
def quality(model, batches) -> dict:
    losses = window_losses(model, batches)
    out = {"val_loss": sum(losses) / len(losses), "window_losses": losses}
    if model.blocks[0].router is not None:  # executed share of tokens, measured on held-out text
        rates = []
        for batch in batches:
            model(batch)
            rates.append(torch.stack([b.last_exec.float().mean() for b in model.blocks]).mean())
        out["exec_rate"] = float(torch.stack(rates).mean())
    out["gemm_flops"] = sum(g.flops for g in flops.gemms_of(model, batches[0]))
    return out


def run(ctx: StageContext) -> dict:
    family = ctx.wildcards["family"]
    ev = ctx.params["evaluate"]
    batches = validation_windows(ctx.inputs["data"], ev["windows"], ev["seq_len"], ev["batch_size"], device())
    dense = quality(method.PrunableLlama.from_checkpoint(ctx.inputs["model"] / "model").to(device()), batches)
    results = {}
    for s in method.sparsities_for(family, ctx.params["prune"]["sparsities"]):
        q = quality(method.load_pruned(ctx.inputs["pruned"] / f"s{s}", device()), batches)
        q["quality_loss"] = (q["val_loss"] - dense["val_loss"]) / dense["val_loss"]
        q["flops_removed"] = 1 - q["gemm_flops"] / dense["gemm_flops"]
        results[str(s)] = q
    return {"family": family, "seed": int(ctx.wildcards["seed"]), "dense": dense, "sparsities": results}


if __name__ == "__main__":
    main(run)
