"""Stage 5: CPU latency of one tracking step (backbone + head) per variant at batch 1 and 32.

Weights do not change the cost (token counts are fixed by the keep ratios), so the tracker is
built at random init from the model params and runs independently of training. Every variant,
the un-pruned baseline included, goes through the same forward; variants are timed in interleaved
rounds (median of round medians) so that background load drifts hit them alike; the fastest
call is kept too, as the estimate least disturbed by other processes on a shared machine.
"""
import statistics

import torch

from repro.core.stage import StageContext, main
from repro.core.timing import measure
from repro.papers.utptrack.method import build_tracker, variant_pruning


def random_inputs(model, batch: int, gen: torch.Generator) -> dict:
    s, z, n = model.search_size, model.template_size, model.gz**2
    return {"search": torch.randn(batch, 3, s, s, generator=gen), "static": torch.randn(batch, 3, z, z, generator=gen),
            "dynamic": torch.randn(batch, 3, z, z, generator=gen), "fg_static": torch.rand(batch, n, generator=gen),
            "fg_dynamic": torch.rand(batch, n, generator=gen)}


def run(ctx: StageContext) -> dict:
    p, lat = ctx.params, ctx.params["latency"]
    torch.manual_seed(ctx.seed)
    model = build_tracker(p["model"], p["crops"]).eval()
    names = list(p["variants"])
    prunings = {n: variant_pruning(model, p["variants"], n) for n in names}
    out = {n: {} for n in names}
    for batch in lat["batch_sizes"]:
        x = random_inputs(model, batch, torch.Generator().manual_seed(ctx.seed))
        rounds = {n: [] for n in names}
        for _ in range(lat["rounds"]):
            for n in names:
                model.pruning = prunings[n]
                t = measure(lambda: model.predict(**x), warmup=lat["warmup"], repeats=lat["repeats"])
                rounds[n].append(t)
        base = statistics.median(r["median"] for r in rounds["baseline"])
        base_min = min(r["min"] for r in rounds["baseline"])
        for n in names:
            sec = statistics.median(r["median"] for r in rounds[n])
            fastest = min(r["min"] for r in rounds[n])  # least disturbed by other processes
            out[n][f"b{batch}"] = {"seconds": sec, "ms_per_frame": 1000 * sec / batch, "speedup": base / sec,
                                   "min_seconds": fastest, "speedup_of_min": base_min / fastest}
    return {"variants": out, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    main(run)
