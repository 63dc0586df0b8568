"""Stage 3: train one paradigm (arm) with one seed. Every arm and seed starts from the pre-trained
model (stage 2); the arms of a seed see the same videos in the same order for the same steps, only
the sequence layout, the mask and the positions differ (method.layout); seeds differ in that order.
Output: model/, history.json."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.tays._split import load_split
from repro.models.mllm import TinyMLLM
from repro.papers.tays.method import Objective, codec_for, collate, layout


def run(ctx: StageContext) -> dict:
    p, arm, seed = ctx.params, ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    t = p["train"]
    codec = codec_for(p)
    torch.manual_seed(seed)
    model = TinyMLLM.load(ctx.inputs["pretrain"] / "model").train()  # the training loop places it
    per_group = p["data"]["fps"] * model.n_visual
    rows = load_split(ctx.inputs["data"], "train")
    layouts = [layout(r, arm, codec, per_group, t["skip_weight"]) for r in rows]
    order = np.random.default_rng((ctx.seed, 1, seed))  # the same batches for every arm of this seed

    def next_batch(step: int) -> dict:
        pick = order.choice(len(rows), t["batch_size"], replace=False)
        return collate([layouts[i] for i in pick], [rows[i]["frames"] for i in pick])

    losses = train_causal_lm(Objective(model, arm), next_batch, steps=t["steps"], lr=t["lr"], warmup=t["warmup"],
                             weight_decay=t["weight_decay"], grad_clip=t["grad_clip"], desc=f"train {arm} seed {seed}")
    model.eval().save(ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    lengths = [len(x["ids"]) for x in layouts]
    return {"arm": arm, "seed": seed, "steps": t["steps"], "params": sum(q.numel() for q in model.parameters()),
            "tokens_per_row_mean": float(np.mean(lengths)), "train_loss_first": tail_mean(losses[: max(1, len(losses) // 10)]),
            "train_loss_last": tail_mean(losses)}


if __name__ == "__main__":
    main(run)
