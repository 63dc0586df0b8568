"""One call seeds every generator a job touches, and pins CPU threads for repeatable numbers.

str hashing (set iteration order) is fixed by PYTHONHASHSEED, which Python reads only at start-up:
the workflow sets it in every job's environment (PYTHON in workflow/rules/common.smk), not here.
"""
from __future__ import annotations

import random


def seed_everything(seed: int, threads: int | None = None) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    # No torch.use_deterministic_algorithms: it imports torch._inductor (2 s per job), and the CPU
    # kernels used here are deterministic for a fixed thread count (tests check equal metrics).


def generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)
