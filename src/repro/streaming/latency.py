"""Latency of a streaming output: Average Lagging (AL) and Length-Adaptive AL (LAAL).

`delays[t]` is the number of source units read when target token t+1 was written. AL (Ma et al.,
2019) uses the rate |hyp| / |src|; SimulEval's default AL (`al_reference`, its ALScorer with
use_ref_len) the rate |ref| / |src|; LAAL (Papi et al., 2022) uses max(|hyp|, |ref|) / |src|, so an
over-long hypothesis cannot lower its own lag. All average over the tokens written up to (and
including) the first one written after the whole source was read. An output with no tokens counts
as AL = |src| (it waited for the whole source); SimulEval skips such an instance instead.
"""
from __future__ import annotations

from typing import Sequence


def average_lagging(delays: Sequence[float], src_len: int, tgt_len: int) -> float:
    """Lag of one output against an ideal policy that writes at rate tgt_len / src_len."""
    if not delays:  # nothing written: the whole source was waited for
        return float(src_len)
    rate = tgt_len / src_len
    total, tau = 0.0, 0
    for t, d in enumerate(delays):
        total += d - t / rate
        tau = t + 1
        if d >= src_len:
            break
    return total / tau


def al(delays: Sequence[float], src_len: int) -> float:
    return average_lagging(delays, src_len, len(delays))


def al_reference(delays: Sequence[float], src_len: int, ref_len: int) -> float:
    """SimulEval's default AL: the ideal writer's rate is |ref| / |src|."""
    return average_lagging(delays, src_len, ref_len)


def laal(delays: Sequence[float], src_len: int, ref_len: int) -> float:
    return average_lagging(delays, src_len, max(len(delays), ref_len))
