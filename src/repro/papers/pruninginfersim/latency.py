"""Stage 5: TTFT and TPOT of every family on the random-init latency model, against dense.

Weights do not matter for timing, so selection is seeded-random (as in the public simulator), and
the dense baseline runs through the same executor in the same job. Each timed call is also run
once under the GEMM recorder, which gives the removed fraction f and the bound 1 / (1 - f).
"""
import statistics

import torch
from tqdm.auto import tqdm

from repro.core import flops
from repro.core.flops import theoretical_bound
from repro.core.timing import measure
from repro.models.causal_lm import build_causal_lm, device
from repro.core.stage import StageContext, main
from repro.papers.pruninginfersim import method


def settings(lat: dict) -> list[tuple[str, int, int]]:
    return [(phase, b, L) for phase in ("prefill", "decode")
            for b in lat["batch_sizes"] for L in lat["seq_lens"]]


def key(phase: str, batch: int, seq: int) -> str:
    return f"{phase}_b{batch}_l{seq}"


@torch.no_grad()
def timed(model, phase: str, batch: int, seq: int, vocab: int, lat: dict, gen) -> dict:
    """Median seconds of a prefill of [batch, seq] (TTFT) or of one decode step after it (TPOT)."""
    dev = model.embed.weight.device
    ids = torch.randint(0, vocab, (batch, seq), generator=gen).to(dev)
    if phase == "prefill":
        call, gemms = (lambda: model(ids)), flops.gemms_of(model, ids)
    else:
        _, cache = model(ids)
        nxt = torch.randint(0, vocab, (batch, 1), generator=gen).to(dev)
        call, gemms = (lambda: model(nxt, cache)), flops.gemms_of(model, nxt, cache)
    # the recorded call above was the first warm-up call
    t = measure(call, warmup=max(0, lat["warmup"] - 1), repeats=lat["repeats"])
    return {"seconds": t["median"], "gemms": gemms}


def family_latency(base, family, dense, grid, calib, vocab, ctx) -> dict:
    """Median over selection seeds of each setting's time, speedup, removed fraction and bound."""
    lat, p = ctx.params["latency"], ctx.params["prune"]
    out, taxonomy = {}, None
    for s in method.sparsities_for(family, p["sparsities"]):
        per_seed = []
        for seed in lat["seeds"] if family in method.RANDOM_SELECTION else lat["seeds"][:1]:
            pruned, _ = method.apply_family(base, family, s, calib=calib, p=p,
                                            gen=torch.Generator().manual_seed(seed))
            per_seed.append({key(*st): timed(pruned, *st, vocab, lat, torch.Generator().manual_seed(ctx.seed))
                             for st in grid})
        entry = {}
        for st in grid:
            k = key(*st)
            by = "flops" if st[0] == "prefill" else "bytes"
            f = statistics.median(flops.removed_fraction(dense[k]["gemms"], r[k]["gemms"], by) for r in per_seed)
            seconds = statistics.median(r[k]["seconds"] for r in per_seed)
            speedup = dense[k]["seconds"] / seconds
            bound = theoretical_bound(min(f, 0.999))
            entry[k] = {"seconds": seconds, "speedup": speedup, "removed_fraction": f, "bound": bound,
                        "bound_efficiency": speedup / bound}
        out[str(s)] = entry
        # measured taxonomy from the prefill GEMMs (the last, largest sparsity wins)
        taxonomy = flops.shape_changes(dense[key(*grid[0])]["gemms"], per_seed[0][key(*grid[0])]["gemms"])
    return {"sparsities": out, "gemm_changes": taxonomy, "measured_dims": flops.classify(taxonomy),
            "declared_dims": flops.classify(taxonomy, declared=True)}


def run(ctx: StageContext) -> dict:
    lat = ctx.params["latency"]
    spec = ctx.params["latency_model"]
    vocab = spec.get("vocab_size", 256)
    base = method.PrunableLlama.from_hf(build_causal_lm(spec, vocab_size=vocab)).to(device())
    c = lat["calibration"]
    cal_gen = torch.Generator().manual_seed(ctx.seed)
    calib = [torch.randint(0, vocab, (c["batch_size"], c["seq_len"]), generator=cal_gen).to(device())
             for _ in range(c["batches"])]
    grid = settings(lat)
    dense = {key(*st): timed(base, *st, vocab, lat, torch.Generator().manual_seed(ctx.seed)) for st in grid}
    families = {fam: family_latency(base, fam, dense, grid, calib, vocab, ctx)
                for fam in tqdm(ctx.params["families"], desc="latency", mininterval=5)}
    return {"dense": {k: {"seconds": v["seconds"]} for k, v in dense.items()}, "families": families}


if __name__ == "__main__":
    main(run)
