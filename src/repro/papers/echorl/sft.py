"""Stage 2: SFT warm-up of the policy on worked solutions (none at `paper`: RL starts from the base
model); greedy ID/OOD accuracy and the step-entropy profile of the initial policy.

The spec warms up "until in-distribution accuracy is around 50-70%" so that RL sees both degenerate
and informative groups. Accuracy jumps within ~100 steps at tiny scale, so a fixed step count lands
anywhere from 10% to 90%; `sft.stop` instead checks greedy accuracy on RL training prompts (never the
test split) every `every` steps and stops once it reaches `id_accuracy`."""
import random

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.causal_lm import build_causal_lm, count_parameters, save_checkpoint
from repro.models.training import train_causal_lm
from repro.papers.echorl._task import Task


def run(ctx: StageContext) -> dict:
    task = Task(ctx.inputs["data"])
    s, ev = ctx.params["sft"], ctx.params["evaluate"]
    model = build_causal_lm(ctx.params["policy"], vocab_size=len(task.tokenizer))
    losses, checks = [], []
    if s["steps"]:
        sft, rng = task.splits["sft"], random.Random(ctx.seed)
        stop = s["stop"]

        def reached_target(step: int) -> bool:
            if not stop or (step + 1) % stop["every"]:
                return False
            val = task.splits["train"].select(range(min(stop["prompts"], len(task.splits["train"]))))
            acc = task.accuracy(model.eval(), val, ev["batch_size"], ev["max_new_tokens"])
            model.train()
            checks.append({"step": step + 1, "train_prompt_accuracy": acc})
            return acc >= stop["id_accuracy"]

        losses = train_causal_lm(
            model, lambda step: task.sft_batch(sft[rng.sample(range(len(sft)), s["batch_size"])], s["max_len"]),
            steps=s["steps"], lr=s["lr"], warmup=s["warmup"], weight_decay=s["weight_decay"], desc="sft",
            after_step=reached_target)
    model.eval()
    # per test prompt, in the RL jobs' order: the regimes compare GRPO with its start prompt by prompt
    correct = {split: task.correct(model, task.splits[f"{split}_test"], ev["batch_size"], ev["max_new_tokens"])
               for split in ("id", "ood")}
    acc = {split: sum(c) / len(c) for split, c in correct.items()}
    profile = task.entropy_profile(model, "id_test", ev["profile_prompts"], ev["max_new_tokens"], ctx.seed)
    save_checkpoint(model, ctx.out / "model")
    atomic_write_json(ctx.out / "loss_curve.json", losses)
    atomic_write_json(ctx.out / "accuracy_checks.json", checks)
    atomic_write_json(ctx.out / "items.json", correct)
    return {"params_non_embedding": count_parameters(model), "steps": len(losses),
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "id_accuracy": acc["id"], "ood_accuracy": acc["ood"], "entropy_profile": profile}


if __name__ == "__main__":
    main(run)
