"""GEMM accounting: record the logical (M, N, K) of every matrix product a forward pass runs.

Pruning families are told apart by which of M (tokens), N (output features) and K (reduction) they
shrink, so the recorder is what lets a test or a report check the taxonomy against real shapes.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Gemm:
    name: str
    m: int
    n: int
    k: int
    count: int = 1  # identical products run in a batch (heads, batch rows)
    density: float = 1.0  # fraction of the M x N output actually computed (causal attention)
    bytes: int = 0  # bytes of the stationary operand read: weights, or the KV cache for attention
    # K the GEMM is meant to run with on a kernel that was not used (2:4 sparsity: K / 2); None = k
    declared_k: int | None = None

    @property
    def flops(self) -> float:
        """FLOPs executed (with the executed K)."""
        return 2.0 * self.m * self.n * self.k * self.count * self.density

    @property
    def declared(self) -> tuple[int, int, int]:
        """(M, N, K) as declared: the executed shape but for a declared K."""
        return self.m, self.n, self.k if self.declared_k is None else self.declared_k


_active: list[list[Gemm]] = []


@contextlib.contextmanager
def record_gemms() -> Iterator[list[Gemm]]:
    log: list[Gemm] = []
    _active.append(log)
    try:
        yield log
    finally:
        _active.pop()


def recording() -> bool:
    return bool(_active)


def record(name: str, m: int, n: int, k: int, count: int = 1, density: float = 1.0,
           nbytes: int = 0, declared_k: int | None = None) -> None:
    if _active:
        _active[-1].append(Gemm(name, int(m), int(n), int(k), int(count), float(density), int(nbytes),
                                None if declared_k is None else int(declared_k)))


def total_flops(gemms: list[Gemm]) -> float:
    return sum(g.flops for g in gemms)


def total_bytes(gemms: list[Gemm]) -> int:
    return sum(g.bytes for g in gemms)


def theoretical_bound(removed_fraction: float) -> float:
    """Best possible speedup when a fraction f of the work (FLOPs or bytes) is removed: 1 / (1 - f)."""
    if not 0.0 <= removed_fraction < 1.0:
        raise ValueError(f"removed fraction must be in [0, 1), got {removed_fraction}")
    return 1.0 / (1.0 - removed_fraction)
