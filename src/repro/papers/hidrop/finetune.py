"""Stage 3: fine-tune the pre-trained MLLM with one arm's visual-token schedule, for one seed. Every
arm gets the same steps, learning rate and batches (the seed draws them, the same for every arm of
that seed), so arms are paired by seed. Every weight is trained, as in LLaVA-1.5's fine-tuning (the
vision tower is trained here too: ours starts from random weights)."""
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.mllm import TinyMLLM
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.hidrop import _batches
from repro.papers.hidrop.method import Arm, arm_schedule


def run(ctx: StageContext) -> dict:
    p, t, name, seed = ctx.params, ctx.params["finetune"], ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    words = _batches.words(p["model"])
    torch.manual_seed(seed)
    model = TinyMLLM.load(ctx.inputs["model"] / "model", _batches.device()).train()
    sched = arm_schedule(p["arms"], name, len(model.decoder.blocks), model.n_visual)
    split = _batches.load_split(ctx.inputs["data"], "train", words)
    # the workflow seed, a 2 that sets fine-tuning apart from pre-training's streams, the run's seed
    batches = _batches.sampler(split, t["batch_size"], (ctx.seed, 2, seed), split.vqa)
    losses = train_causal_lm(Arm(model, sched, words.bos_id), batches, steps=t["steps"], lr=t["lr"],
                             warmup=t["warmup"], weight_decay=t["weight_decay"], grad_clip=t["grad_clip"],
                             desc=f"finetune {name} seed {seed}")
    model.save(ctx.out / "model")
    atomic_write_json(ctx.out / "schedule.json", {"entry": sched.entry, "drops": sched.drops, "exit": sched.exit,
                                                  "reindex": sched.reindex})
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    return {"arm": name, "seed": seed, "steps": t["steps"], "train_loss_last": tail_mean(losses),
            "visual_tokens_per_layer": sched.counts(model.n_visual)}


if __name__ == "__main__":
    main(run)
