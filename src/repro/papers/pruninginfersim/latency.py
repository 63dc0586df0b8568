"""Stage 5: TTFT and TPOT of every family on the random-init latency model, against dense.

Weights do not matter for timing, so selection is seeded-random (as in the public simulator) over
`latency.seeds` for the families whose selection is random, in the cells `all_seeds_in` names (the
others time the first seed). The cells `sweep_in` names (those the claims read) time every sparsity
of the sweep; the others, the TTFT/TPOT table's, each family at its largest. Per setting (prefill
or one decode step after a cache of L, batch B), dense is re-timed beside every variant in
interleaved pairs with a cache-flushing buffer between calls (repro.core.timing), and beside an
identical copy of itself (the A/A control, whose ratios the analysis judges every timing effect of the
cell against). Each variant's call also runs once under the GEMM recorder: the removed
fraction f (FLOPs at prefill, bytes read at decode) and the bound 1 / (1 - f) come from what ran.
The per-pair ratios go to pairs.json for the analysis' intervals.

Dynamic depth's routers are timed at the execution rates its trained routers measured on held-out
text (the evaluate jobs' per-layer rates, averaged over router seeds), so its quality and its speed
describe the same routers; the rate each timed call actually executed is recorded beside it.
"""
import copy
import re
import statistics

import torch
from tqdm.auto import tqdm

from repro.core import flops
from repro.core.io import atomic_write_json, read_metrics
from repro.core.stage import StageContext, main
from repro.core.timing import AA, interleaved
from repro.models.causal_lm import build_causal_lm, device
from repro.papers.pruninginfersim import method
from repro.report.intervals import speedup


def cells(lat: dict) -> list[tuple[str, str, int, int]]:
    """(key, phase, batch, seq) of every timed cell, e.g. `decode_b1_l512`: one decode step after a
    cache of 512 tokens, batch 1."""
    out = []
    for k in lat["cells"]:
        phase, b, L = re.fullmatch(r"(prefill|decode)_b(\d+)_l(\d+)", k).groups()
        out.append((k, phase, int(b), int(L)))
    return out


def variant_name(family: str, s: float, seed: int) -> str:
    return f"{family}/s{s}/seed{seed}"


@torch.no_grad()
def call_of(model, phase: str, ids: torch.Tensor, nxt: torch.Tensor):
    """The timed call (a prefill of ids, or one decode step of nxt after ids' cache) and its GEMMs."""
    if phase == "prefill":
        return (lambda: model(ids)), flops.gemms_of(model, ids)
    _, cache = model(ids)
    return (lambda: model(nxt, cache)), flops.gemms_of(model, nxt, cache)


def measured_exec_rates(inputs: dict) -> dict[str, list[float]]:
    """Sparsity -> per-layer executed share of the trained routers on held-out text, mean over the
    router seeds (the evaluate/dynamic_depth jobs)."""
    runs = [read_metrics(path)["sparsities"] for name, path in inputs.items()
            if name.startswith("evaluate_dynamic_depth")]
    return {s: [sum(layer) / len(runs) for layer in zip(*(r[s]["exec_rate_per_layer"] for r in runs))]
            for s in (runs[0] if runs else {})}


def build_variants(base, ctx, calib) -> dict[str, tuple[str, float, int, object]]:
    """Every (family, sparsity, selection seed) of the sweep, pruned from the same dense model."""
    lat, p = ctx.params["latency"], ctx.params["prune"]
    rates = measured_exec_rates(ctx.inputs)
    out = {}
    for fam in ctx.params["families"]:
        for s in method.sparsities_for(fam, p["sparsities"]):
            for seed in lat["seeds"] if fam in method.RANDOM_SELECTION else lat["seeds"][:1]:
                pruned, _ = method.apply_family(base, fam, s, calib=calib, p=p, gen=torch.Generator().manual_seed(seed),
                                                exec_rates=rates[str(s)] if fam == "dynamic_depth" else None)
                out[variant_name(fam, s, seed)] = (fam, s, seed, pruned)
    return out


def executed_rate(model) -> float | None:
    """The share of tokens the routers executed in the model's last call (None without routers)."""
    if model.blocks[0].router is None:
        return None
    return float(torch.stack([b.last_exec.float().mean() for b in model.blocks]).mean())


def run(ctx: StageContext) -> dict:
    lat, spec = ctx.params["latency"], ctx.params["latency_model"]
    vocab = spec.get("vocab_size", 256)
    torch.manual_seed(ctx.seed)
    base = method.PrunableLlama.from_hf(build_causal_lm(spec, vocab_size=vocab)).to(device())
    aa_copy = copy.deepcopy(base)  # the A/A control: identical weights, its own memory
    c = lat["calibration"]
    gen = torch.Generator().manual_seed(ctx.seed)
    calib = [torch.randint(0, vocab, (c["batch_size"], c["seq_len"]), generator=gen).to(device())
             for _ in range(c["batches"])]
    variants = build_variants(base, ctx, calib)
    sweep = ctx.params["prune"]["sparsities"]
    largest = {fam: max(method.sparsities_for(fam, sweep)) for fam in ctx.params["families"]}
    families, controls, dense, pairs, executed = {}, {}, {}, {}, {}
    for k, phase, b, L in tqdm(cells(lat), desc="latency cells"):
        ids = torch.randint(0, vocab, (b, L), generator=gen).to(device())
        nxt = torch.randint(0, vocab, (b, 1), generator=gen).to(device())
        base_call, base_gemms = call_of(base, phase, ids, nxt)
        calls, gemms = {AA: call_of(aa_copy, phase, ids, nxt)[0]}, {}
        for name, (fam, s, seed, model) in variants.items():  # elsewhere less: time is the budget
            if ((k in lat["all_seeds_in"] or seed == lat["seeds"][0])
                    and (k in lat["sweep_in"] or s == largest[fam])):
                calls[name], gemms[name] = call_of(model, phase, ids, nxt)
                executed[name] = executed_rate(model)  # of the GEMM-recorded call, i.e. the timed input
        timed = interleaved(base_call, calls, pairs=lat["pairs"].get(k, lat["pairs"]["default"]), warmup=lat["warmup"],
                            flush_mb=lat["flush_mb"], device=device())
        controls[k] = speedup(timed.pop(AA))
        dense[k] = {"seconds": statistics.median(t for v in timed.values() for t in v["baseline_s"])}
        pairs[k] = {AA: controls[k].pop("ratios")}
        by = "flops" if phase == "prefill" else "bytes"
        for name, t in timed.items():
            fam, s, seed, _ = variants[name]
            sp = speedup(t)
            pairs[k][name] = sp.pop("ratios")
            f = flops.removed_fraction(base_gemms, gemms[name], by)
            cell = families.setdefault(fam, {"sparsities": {}})["sparsities"].setdefault(str(s), {})
            cell.setdefault(k, {})[f"seed{seed}"] = {"speedup": sp, "removed_fraction": f,
                                                    "bound": flops.theoretical_bound(min(f, 0.999))}
            if executed[name] is not None:
                cell[k][f"seed{seed}"]["exec_rate"] = executed[name]
            if k == lat["cells"][0]:  # measured taxonomy from the first cell's GEMMs (largest sparsity, last seed)
                changes = flops.shape_changes(base_gemms, gemms[name])
                families[fam].update(gemm_changes=changes, measured_dims=flops.classify(changes),
                                     declared_dims=flops.classify(changes, declared=True))
        del calls, gemms
    atomic_write_json(ctx.out / "pairs.json", pairs)
    return {"pairs": {k: lat["pairs"].get(k, lat["pairs"]["default"]) for k in dense}, "control": controls,
            "swept": [k for k in dense if k in lat["sweep_in"]],
            "dense": dense, "families": families}


if __name__ == "__main__":
    main(run)
