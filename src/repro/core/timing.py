"""CPU timing: fixed threads, warm-up calls, median of repeats (the first call is several x slower)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def measure(fn: Callable[[], object], warmup: int = 1, repeats: int = 5) -> dict:
    """Run `fn` warmup times untimed, then `repeats` times; seconds as median/min/max.

    On a GPU each call is bracketed by a device synchronisation, so the time is the kernels'.
    """
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": repeats}
