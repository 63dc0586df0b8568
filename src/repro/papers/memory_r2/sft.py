"""Stage 2: SFT warm start on an imperfect oracle (it drops some facts and mostly writes `insert`),
for the shared model (both roles) and for one model per role (same size, same steps: equal capacity
per role); greedy test evaluation of both (the "SFT only" rows). At `paper`: no SFT, the
pretrained model is copied."""
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
    sets = {"shared": examples, **{role: [e for e in examples if e[0] == role] for role in method.ROLES}}
    models, curves = {}, {}
    for name, data in sets.items():
        model = build_causal_lm(ctx.params["policy"], vocab_size=len(world.tokenizer))
        batch_rng = random.Random(ctx.seed)
        curves[name] = train_causal_lm(
            model, lambda step: world.sft_batch(batch_rng.sample(data, s["batch_size"]), s["max_len"]),
            steps=s["steps"], lr=s["lr"], warmup=s["warmup"], weight_decay=s["weight_decay"], desc=f"sft {name}") \
            if s["steps"] else []
        save_checkpoint(model, ctx.out / name)
        models[name] = model
    shared = {role: models["shared"] for role in method.ROLES}
    separate = {role: models[role] for role in method.ROLES}
    records = {"shared": evaluate(shared, world, ctx.params, "test"),
               "separate": evaluate(separate, world, ctx.params, "test")}
    atomic_write_json(ctx.out / "items.json", records)
    atomic_write_json(ctx.out / "loss_curves.json", curves)
    return {"examples": {name: len(v) for name, v in sets.items()},
            "params_non_embedding": {name: count_parameters(m) for name, m in models.items()},
            "loss_last": {name: tail_mean(c) for name, c in curves.items()},
            "test": {name: summary(r) for name, r in records.items()}}


if __name__ == "__main__":
    main(run)
