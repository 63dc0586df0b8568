"""Stage 4: answer every test question with one arm's fine-tuned model (seed), under the arm's
schedule. Keeps each question's correctness (the items the analysis pairs across arms), accuracy
per question type, the visual tokens each layer processed (counted in the forward), the text tokens
beside them (<bos> and the question, padding left out), and the prefill FLOPs of the language model
(GEMMs recorded in the forward)."""
import numpy as np
import torch

from repro.core import flops
from repro.core.stage import StageContext, main
from repro.data.scenes import KINDS
from repro.models.mllm import TinyMLLM
from repro.papers.hidrop import _batches
from repro.papers.hidrop.method import Arm, arm_schedule, average_tokens


@torch.no_grad()
def answer(arm: Arm, split: _batches.Split, batch_size: int) -> tuple[np.ndarray, list[int], float]:
    """Correct (0/1) per question, the visual tokens per layer (the same in every batch: checked),
    and the language model's prefill FLOPs per question (first batch)."""
    correct, traces, gemm = [], set(), None
    dev = _batches.device()
    for idx in _batches.chunks(len(split), batch_size):
        b = {k: v.to(dev) for k, v in split.vqa(idx).items()}
        with flops.record_gemms() as log:
            out = arm(b["images"], b["text"], b["last"])
        gemm = gemm if gemm is not None else flops.total_flops(log) / len(idx)
        correct.append((out.logits.argmax(-1) == b["answer"]).cpu().numpy())
        traces.add(tuple(arm.trace.visual))
    if len(traces) != 1:
        raise RuntimeError(f"visual tokens per layer differ between batches: {traces}")
    return np.concatenate(correct).astype(float), list(traces.pop()), gemm


def run(ctx: StageContext) -> dict:
    p, name, seed = ctx.params, ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    words = _batches.words(p["model"])
    model = TinyMLLM.load(ctx.inputs["model"] / "model", _batches.device()).eval()
    sched = arm_schedule(p["arms"], name, len(model.decoder.blocks), model.n_visual)
    split = _batches.load_split(ctx.inputs["data"], "test", words)
    correct, visual, gemm = answer(Arm(model, sched, words.bos_id), split, p["evaluate"]["batch_size"])
    kinds = np.array(split.kind)
    return {"arm": name, "seed": seed, "accuracy": float(correct.mean()),
            "by_kind": {k: float(correct[kinds == k].mean()) for k in KINDS if (kinds == k).any()},
            "correct": correct.astype(int).tolist(), "kinds": split.kind,
            "visual_tokens_per_layer": visual, "visual_tokens_avg": average_tokens(visual),
            "visual_tokens_full": model.n_visual, "text_tokens_mean": 1 + float((split.last + 1).float().mean()),
            "prefill_flops": gemm}


if __name__ == "__main__":
    main(run)
