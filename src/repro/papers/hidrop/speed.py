"""Stage 5: training and prefill speed. A training step (forward, backward, AdamW update) of the
vanilla arm and of HiDrop through the same per-layer loop, timed in interleaved pairs with the A/A
control (vanilla against an identical copy); prefill (the forward that answers) of HiDrop and PDrop
against vanilla the same way. Weights do not change the cost (schedules fix the token counts), so
the models are built at random init from the model params; the batch is the first training rows.
The FLOPs of the language model's GEMMs, recorded in one forward of each arm, give the analytic ratio."""
import copy

import torch

from repro.core import flops
from repro.core.stage import StageContext, main
from repro.core.timing import AA, interleaved
from repro.models.mllm import build_mllm
from repro.papers.hidrop import _batches
from repro.papers.hidrop.method import Arm, arm_schedule


def train_step(arm: Arm, batch: dict):
    opt = torch.optim.AdamW(arm.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        arm(**batch).loss.backward()
        opt.step()

    return step


def prefill(arm: Arm, batch: dict):
    inputs = {k: batch[k] for k in ("images", "text", "last")}

    def step():
        with torch.no_grad():
            arm(**inputs)

    return step


def gemm_flops(arm: Arm, batch: dict) -> float:
    with torch.no_grad(), flops.record_gemms() as log:
        arm(**{k: batch[k] for k in ("images", "text", "last")})
    return flops.total_flops(log)


def run(ctx: StageContext) -> dict:
    p, s = ctx.params, ctx.params["speed"]
    words = _batches.words(p["model"])
    dev = _batches.device()
    torch.manual_seed(ctx.seed)
    base = build_mllm(p["model"], len(words)).to(dev)
    layers, n = len(base.decoder.blocks), base.n_visual
    arm = lambda name, model: Arm(model, arm_schedule(p["arms"], name, layers, n), words.bos_id)  # noqa: E731
    roles = s["roles"]
    split = _batches.load_split(ctx.inputs["data"], "train", words)
    out = {"pairs": {}, "flops": {}}
    for what, make in (("train", train_step), ("prefill", prefill)):
        batch = {k: v.to(dev) for k, v in split.vqa(range(s[f"{what}_batch"])).items()}
        vanilla = arm(roles["vanilla"], base).train(what == "train")
        variants = {AA: arm(roles["vanilla"], copy.deepcopy(base))}
        for name in s[f"{what}_arms"]:
            variants[name] = arm(name, copy.deepcopy(base))
        for a in variants.values():
            a.train(what == "train")
        out["pairs"][what] = interleaved(make(vanilla, batch), {k: make(a, batch) for k, a in variants.items()},
                                         pairs=s["pairs"], warmup=s["warmup"], flush_mb=s["flush_mb"], device=dev)
        out["flops"][what] = {k: gemm_flops(a, batch) / s[f"{what}_batch"] for k, a in
                              {roles["vanilla"]: vanilla, **variants}.items() if k != AA}
    return {**out, "device": dev, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    main(run)
