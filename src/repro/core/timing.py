"""Timing a variant against its baseline so that a ratio, not a load spike, is what gets measured.

`interleaved` times the baseline next to every variant in adjacent pairs (the order within a pair
alternates, so neither side always runs second), touches a buffer larger than the last-level cache
before each call (no call inherits the previous one's warm cache; on a GPU the buffer lives there
and clears L2), and synchronises the device around each call. A per-pair ratio cancels what drifts
slowly (other processes, clock scaling); repro.report.intervals.speedup turns the pairs into a
median ratio with an order-statistic interval over pairs. Every timing job also times the baseline
against an identical copy of itself (`AA` = the A/A control): repro.report.intervals.against_aa widens
each timing effect by that control's deviation from 1, and the report's Controls section shows whether
it stayed within AA_BOUNDS.

torch.utils.benchmark's Timer measures one statement in blocks of repeats; alternating pairs and
cache flushes between calls are what this harness adds, so it uses perf_counter directly.
"""
from __future__ import annotations

import time
from typing import Callable

AA = "A/A control"
AA_BOUNDS = (0.97, 1.03)


def _sync(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def interleaved(baseline: Callable[[], object], variants: dict[str, Callable[[], object]], *, pairs: int,
                warmup: int = 1, flush_mb: int = 64, device: str = "cpu") -> dict[str, dict]:
    """For each variant, `pairs` (baseline seconds, variant seconds) measured side by side."""
    import torch

    if pairs < 2:
        raise ValueError(f"pairs must be >= 2 for an interval, got {pairs}")
    sync = _sync(device)
    flush = torch.empty(flush_mb * 2**20 // 4, dtype=torch.float32, device=device)

    def timed(fn) -> float:
        flush.add_(1.0)  # a write pass over more than the last-level cache
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    for fn in (baseline, *variants.values()):
        for _ in range(warmup):  # first calls allocate and dispatch: several times slower
            fn()
    out = {name: {"baseline_s": [], "variant_s": []} for name in variants}
    for i in range(pairs):
        for name, fn in variants.items():
            if i % 2 == 0:
                b, v = timed(baseline), timed(fn)
            else:
                v, b = timed(fn), timed(baseline)
            out[name]["baseline_s"].append(b)
            out[name]["variant_s"].append(v)
    return out

