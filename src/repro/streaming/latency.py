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


# ---------------------------------------------------------------- a simulated stream clock (tays)


def stream_clock(arrive: Sequence[float], prefill: Sequence[float], unit_tokens: Sequence[int], token_s: float,
                 mode: str) -> list[float]:
    """Emission time of every generated token on a stream timeline; group k's frames are complete
    at `arrive[k]`, take `prefill[k]` seconds to encode and prefill, and unit k has `unit_tokens[k]`
    tokens of `token_s` seconds each.

    `concurrent` (think while you see): encoding runs on its own timeline (group k done at
    max(arrive[k], done[k-1]) + prefill[k]); unit k starts when group k is done and unit k-1 ended.
    `serial` (interleaved): one timeline, group k is prefilled when it has arrived and unit k-1 ended,
    then unit k is generated. `after_stream` (batch): every group is prefilled once the last one has
    arrived, then the units are generated in turn.
    """
    if mode not in ("concurrent", "serial", "after_stream"):
        raise ValueError(f"unknown clock mode {mode!r}")
    times, seen, busy = [], 0.0, 0.0  # seen: encoder's clock; busy: decoder's clock
    if mode == "after_stream":
        busy = arrive[-1] + sum(prefill)
    for k, n in enumerate(unit_tokens):
        if mode == "concurrent":
            seen = max(arrive[k], seen) + prefill[k]
            busy = max(busy, seen)
        elif mode == "serial":
            busy = max(arrive[k], busy) + prefill[k]
        times += [busy + (j + 1) * token_s for j in range(n)]
        busy += n * token_s
    return times


def first_time(times: Sequence[float], keep: Sequence[bool] | None = None, start: float = 0.0) -> float:
    """Time from `start` to the first token (the first with keep True: e.g. the first non-<skip>);
    inf when there is none."""
    for t, k in zip(times, keep if keep is not None else [True] * len(times)):
        if k:
            return t - start
    return float("inf")


def end_delay(answer_time: float, stream_end: float) -> float:
    """Delay from the end of the stream to the answer."""
    return answer_time - stream_end
