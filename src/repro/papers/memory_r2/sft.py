"""Stage 2: SFT warm start on an imperfect oracle (it drops some facts and mostly writes `insert`),
for the shared model (both roles) and for one model per role (same size: equal capacity per role).
Equal steps per role: every step draws half a batch of each role's examples; the shared model trains
on both halves, each per-role model on its own half, so each role gets the same steps and the same
examples in either parameterisation. Greedy validation and test evaluation of both (the SFT start,
a checkpoint candidate of every RL arm, and the "SFT only" rows), and the test scored on an empty
memory. At `paper`: no SFT, the pretrained model is copied."""
import random

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.causal_lm import build_causal_lm, count_parameters, save_checkpoint
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.memory_r2 import method
from repro.papers.memory_r2._world import World, evaluate, summary


def run(ctx: StageContext) -> dict:
    world = World(ctx.inputs["data"])
    s, k = ctx.params["sft"], ctx.params["rollout"]["top_k"]
    rng = random.Random(ctx.seed)
    examples = [e for conv in world.convs("sft") if s["steps"]
                for e in method.oracle_examples(conv, rng, s["oracle"]["drop"], s["oracle"]["op_correct"], k)]
    by_role = {role: [e for e in examples if e[0] == role] for role in method.ROLES}
    half = s["batch_size"] // 2
    draws = {role: [rng.sample(range(len(ex)), half) for _ in range(s["steps"])] for role, ex in by_role.items()}
    per_step = {"shared": method.ROLES, **{role: (role,) for role in method.ROLES}}
    models, curves = {}, {}
    for name, roles in per_step.items():
        model = build_causal_lm(ctx.params["policy"], vocab_size=len(world.tokenizer))
        curves[name] = train_causal_lm(
            model, lambda step, roles=roles: world.sft_batch(
                [by_role[r][i] for r in roles for i in draws[r][step]], s["max_len"]),
            steps=s["steps"], lr=s["lr"], warmup=s["warmup"], weight_decay=s["weight_decay"], desc=f"sft {name}") \
            if s["steps"] else []
        save_checkpoint(model, ctx.out / name)
        models[name] = model
    backbones = {"shared": {role: models["shared"] for role in method.ROLES},
                 "separate": {role: models[role] for role in method.ROLES}}
    val = {name: evaluate(m, world, ctx.params, "val") for name, m in backbones.items()}
    records = {name: evaluate(m, world, ctx.params, "test") for name, m in backbones.items()}
    # the answerer on an empty memory: what F1 needs no memory at all (R3's regime)
    records["empty"] = [method.score(method.Memory(), c, k, method.Reward(**ctx.params["reward"]))
                        for c in world.convs("test")]
    atomic_write_json(ctx.out / "validation.json", val)
    atomic_write_json(ctx.out / "items.json", records)
    atomic_write_json(ctx.out / "loss_curves.json", curves)
    return {"examples": {role: len(v) for role, v in by_role.items()},
            "examples_per_role_and_step": half,
            "params_non_embedding": {name: count_parameters(m) for name, m in models.items()},
            "loss_last": {name: tail_mean(c) for name, c in curves.items()},
            "val": {name: summary(r) for name, r in val.items()},
            "test": {name: summary(r) for name, r in records.items()}}


if __name__ == "__main__":
    main(run)
