"""Stage 2: SFT warm-up of the policy on worked solutions (none at `paper`: RL starts from the base
model); greedy ID/OOD accuracy and the step-entropy profile of the initial policy."""
import random

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.causal_lm import build_causal_lm, count_parameters, save_checkpoint
from repro.models.training import train_causal_lm
from repro.papers.echorl.task import Task


def run(ctx: StageContext) -> dict:
    task = Task(ctx.inputs["data"])
    s, ev = ctx.params["sft"], ctx.params["evaluate"]
    model = build_causal_lm(ctx.params["policy"], vocab_size=len(task.tokenizer))
    losses = []
    if s["steps"]:
        sft, rng = task.splits["sft"], random.Random(ctx.seed)
        losses = train_causal_lm(
            model, lambda step: task.sft_batch(sft[rng.sample(range(len(sft)), s["batch_size"])], s["max_len"]),
            steps=s["steps"], lr=s["lr"], warmup=s["warmup"], weight_decay=s["weight_decay"], desc="sft")
    model.eval()
    acc = {split: task.accuracy(model, f"{split}_test", ev["batch_size"], ev["max_new_tokens"])
           for split in ("id", "ood")}
    profile = task.entropy_profile(model, "id_test", ev["profile_prompts"], ev["max_new_tokens"], ctx.seed)
    save_checkpoint(model, ctx.out / "model")
    atomic_write_json(ctx.out / "loss_curve.json", losses)
    return {"params_non_embedding": count_parameters(model), "steps": s["steps"],
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "id_accuracy": acc["id"], "ood_accuracy": acc["ood"], "entropy_profile": profile}


if __name__ == "__main__":
    main(run)
