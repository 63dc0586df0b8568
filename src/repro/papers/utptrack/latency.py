"""Stage 5: latency of one tracking step (backbone + head) per variant at each batch size, on the
device (the CPU here).

Weights do not change the cost (token counts are fixed by the keep ratios), so the tracker is
built at random init from the model params and runs independently of training. Each pruned
variant is a copy of the un-pruned tracker with its pruning set; every variant, and an identical
copy of the un-pruned tracker (the A/A control), is timed in pairs alternating with the un-pruned
baseline through the same forward (repro.core.timing.interleaved). The pairs go to the analysis,
which turns them into speedups with intervals.
"""
import copy

import torch

from repro.core.stage import StageContext, main
from repro.core.timing import AA, interleaved
from repro.papers.utptrack.method import build_tracker, variant_pruning


def random_inputs(model, batch: int, gen: torch.Generator, device: str) -> dict:
    s, z, n = model.search_size, model.template_size, model.gz**2
    x = {"search": torch.randn(batch, 3, s, s, generator=gen), "static": torch.randn(batch, 3, z, z, generator=gen),
         "dynamic": torch.randn(batch, 3, z, z, generator=gen), "fg_static": torch.rand(batch, n, generator=gen),
         "fg_dynamic": torch.rand(batch, n, generator=gen)}
    return {k: v.to(device) for k, v in x.items()}


def run(ctx: StageContext) -> dict:
    p, lat = ctx.params, ctx.params["latency"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(ctx.seed)
    baseline = build_tracker(p["model"], p["crops"]).eval().to(device)
    trackers = {AA: copy.deepcopy(baseline)}
    for name in p["variants"]:
        if name != "baseline":
            trackers[name] = copy.deepcopy(baseline)
            trackers[name].pruning = variant_pruning(baseline, p["variants"], name)
    pairs = {}
    for batch in lat["batch_sizes"]:
        x = random_inputs(baseline, batch, torch.Generator().manual_seed(ctx.seed), device)
        step = lambda model: (lambda: model.predict(**x))  # noqa: E731
        pairs[f"b{batch}"] = interleaved(step(baseline), {n: step(m) for n, m in trackers.items()},
                                         pairs=lat["pairs"], warmup=lat["warmup"], flush_mb=lat["flush_mb"],
                                         device=device)
    return {"pairs": pairs, "batch_sizes": lat["batch_sizes"], "device": device, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    main(run)
