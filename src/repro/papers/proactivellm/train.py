"""Stage 3: fine-tune one arm (V0 full, V1 wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label head)
on one task from the shared backbone with one seed. Every arm starts from the same weights and
trains for the same steps; the seed orders the examples, draws the visibility schedules and
initialises the V4 head, and the arms of one seed see the same examples in the same order (only
the schedules and the loss differ). Output: model/, head/ (V4), loss_curve.json."""
from repro.core.seeding import seed_everything
from repro.core.stage import StageContext, main
from repro.models.causal_lm import load_checkpoint
from repro.papers.proactivellm._fit import fit


def run(ctx: StageContext) -> dict:
    task, name, seed = ctx.wildcards["task"], ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    seed_everything(seed, ctx.threads)
    lm = load_checkpoint(ctx.inputs["backbone"] / "model", ctx.params["model"].get("attn_implementation"))
    metrics = fit(ctx, lm, ctx.params["arms"][name], ctx.params["train"], f"train {task}/{name}/seed{seed}",
                  ctx.out, seed)
    return {**metrics, "arm": name}


if __name__ == "__main__":
    main(run)
