"""Stage 2: train one paradigm (arm) with one seed. Every arm of a seed starts from the same
initialisation and sees the same videos in the same order for the same steps; only the sequence
layout, the mask and the positions differ (method.layout). Output: model/, history.json."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.tays._split import load_split
from repro.papers.tays.method import Codec, Objective, build_model, collate, layout


def run(ctx: StageContext) -> dict:
    p, arm, seed = ctx.params, ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    t = p["train"]
    codec = Codec(p["model"].get("tokenizer"))
    torch.manual_seed(seed)  # the same initialisation for every arm of this seed
    model = build_model(p["model"], codec)
    per_group = p["data"]["fps"] * model.n_visual
    rows = load_split(ctx.inputs["data"], "train")
    layouts = [layout(r, arm, codec, per_group, t["skip_weight"]) for r in rows]
    order = np.random.default_rng((ctx.seed, 1, seed))  # the same batches for every arm of this seed

    def next_batch(step: int) -> dict:
        pick = order.choice(len(rows), t["batch_size"], replace=False)
        return collate([layouts[i] for i in pick], [rows[i]["frames"] for i in pick])

    losses = train_causal_lm(Objective(model), next_batch, steps=t["steps"], lr=t["lr"], warmup=t["warmup"],
                             weight_decay=t["weight_decay"], grad_clip=t["grad_clip"], desc=f"train {arm} seed {seed}")
    model.eval().save(ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    lengths = [len(x["ids"]) for x in layouts]
    return {"arm": arm, "seed": seed, "steps": t["steps"], "params": sum(q.numel() for q in model.parameters()),
            "tokens_per_row_mean": float(np.mean(lengths)), "train_loss_first": tail_mean(losses[: max(1, len(losses) // 10)]),
            "train_loss_last": tail_mean(losses)}


if __name__ == "__main__":
    main(run)
