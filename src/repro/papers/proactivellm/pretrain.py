"""Stage 2: the backbone every arm of a task starts from: a model trained offline (full source
visible) on the task, as the paper starts from an instruction-tuned LLM. At `paper` the backbone is
the hub model itself (steps 0). One seed (the global one): every arm and every seed of the claims
fine-tunes from this backbone, so the claims compare what comes after it."""
import torch

from repro.core.stage import StageContext, main
from repro.models.causal_lm import build_causal_lm
from repro.papers.proactivellm._task import Task
from repro.papers.proactivellm._fit import fit


def run(ctx: StageContext) -> dict:
    name = ctx.wildcards["task"]
    task = Task(ctx.inputs["data"], ctx.params["tasks"][name]["eos_full_source"])
    torch.manual_seed(ctx.seed)
    lm = build_causal_lm(ctx.params["model"], vocab_size=len(task.tokenizer))
    return fit(ctx, lm, {"kind": "full"}, ctx.params["pretrain"], f"pretrain {name}", ctx.out, ctx.seed)


if __name__ == "__main__":
    main(run)
