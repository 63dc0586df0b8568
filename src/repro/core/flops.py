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


# --------------------------------------------------------------------------- comparing two runs
def gemms_of(model, ids: torch.Tensor, past=None) -> list[Gemm]:
    """The non-embedding GEMMs of one forward call (the LM head is outside every pruning's reach)."""
    import torch

    with torch.no_grad(), record_gemms() as log:
        model(ids, past)
    return [g for g in log if g.name != "lm_head"]


def removed_fraction(dense: list[Gemm], pruned: list[Gemm], by: str) -> float:
    """f: the share of FLOPs (compute-bound) or bytes read (memory-bound) a variant removed."""
    total = total_flops if by == "flops" else total_bytes
    return max(0.0, 1.0 - total(pruned) / total(dense))


def shape_changes(dense: list[Gemm], pruned: list[Gemm]) -> dict:
    """Which of M/N/K shrank per op, executed ("dims") and as declared ("declared_dims": 2:4's K),
    which ops vanished and which were added: the measured taxonomy."""
    d, p = ({g.name: g for g in reversed(gemms)} for gemms in (dense, pruned))  # first call of a name wins

    def shrunk(declared: bool) -> list[str]:
        dims = set()
        for name in d.keys() & p.keys():
            new = p[name].declared if declared else (p[name].m, p[name].n, p[name].k)
            dims |= {dim for dim, a, b in zip("MNK", new, (d[name].m, d[name].n, d[name].k)) if a < b}
        return sorted(dims)

    return {"dims": shrunk(False), "declared_dims": shrunk(True), "removed": sorted(d.keys() - p.keys()),
            "added": sorted(p.keys() - d.keys())}


def classify(changes: dict, declared: bool = False) -> list[str]:
    """Which GEMM dimension a variant shrinks, from the executed shapes or the declared ones:
    ["removed"] when whole GEMMs vanished and no shape shrank."""
    dims = changes["declared_dims" if declared else "dims"]
    if changes["removed"] and not dims:
        return ["removed"]
    return dims
