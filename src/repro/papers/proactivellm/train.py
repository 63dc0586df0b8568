"""Stage 3: fine-tune every arm (V0 full, V1 wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label head)
on one task from the shared backbone, one after the other in one job (the arms are small; one job
per arm would spend more on start-up than on training at the smoke profile). Every arm starts from
the same weights and sees the same examples in the same order for the same number of steps; only
the visibility schedules and the loss differ. Output: <arm>/model, <arm>/loss_curve.json."""
import time

import torch

from repro.core.stage import StageContext, main
from repro.models.causal_lm import load_checkpoint
from repro.papers.proactivellm._fit import fit


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
