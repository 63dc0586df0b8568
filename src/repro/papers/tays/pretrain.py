"""Stage 2: the shared starting point of every arm and seed: the tiny MLLM trained to caption
one-second still clips with the objects in view, in reading order, as a video's unit 0 names them
(LLaVA's alignment stage; the paper fine-tunes a pre-trained Qwen2.5-VL that already names what it
sees, and round 2's pilots found naming, not timing, to be what the arms failed at). One run with
the workflow seed; greedy captions of held-out stills are its check. `steps: 0` (the `paper` profile,
whose hub models are the pre-trained start) saves the built model as it is. Output: model/,
history.json."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.events import stills
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.tays.method import Objective, build_model, caption, caption_layout, codec_for, collate


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["pretrain"]
    codec = codec_for(p)
    torch.manual_seed(ctx.seed)
    model = build_model(p["model"], codec)
    source = {"image_size": p["model"]["image_size"], "fps": p["data"]["fps"]}
    out = {"steps": t["steps"], "params": sum(q.numel() for q in model.parameters())}
    losses = []
    if t["steps"]:
        pool = stills(np.random.default_rng((ctx.seed, 2)), t["stills"], source)
        rows = [caption_layout(x["caption"], codec, p["data"]["fps"] * model.n_visual) for x in pool]
        order = np.random.default_rng((ctx.seed, 3))

        def next_batch(step: int) -> dict:
            pick = order.choice(len(rows), t["batch_size"], replace=False)
            return collate([rows[i] for i in pick], [pool[i]["frames"] for i in pick])

        losses = train_causal_lm(Objective(model, "captions"), next_batch, steps=t["steps"], lr=t["lr"],
                                 warmup=t["warmup"], weight_decay=t["weight_decay"], grad_clip=t["grad_clip"],
                                 desc="pretrain")
        held = stills(np.random.default_rng((ctx.seed, 4)), t["held_out"], source)
        said = [caption(model.eval(), codec, x["frames"], 16) for x in held]  # 4 objects: 11 words
        out.update(caption_exact=float(np.mean([s == x["caption"] for s, x in zip(said, held)])),
                   object_recall=float(np.mean([np.mean([o in s.split(" , ") for o in x["caption"].split(" , ")])
                                                for s, x in zip(said, held)])),
                   train_loss_first=tail_mean(losses[: max(1, len(losses) // 10)]), train_loss_last=tail_mean(losses))
    model.eval().save(ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    return out


if __name__ == "__main__":
    main(run)
