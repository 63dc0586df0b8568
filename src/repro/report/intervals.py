"""Effects with 95% intervals: what every claim check reads (design.md "Verdicts").

An effect is a record `{"value", "ci": [lo, hi], "n", "unit"}`; `unit` says what was resampled:
`seeds` (training-dependent effects), `pairs` (interleaved timing pairs), `items` (test items of one
model), `seeds x items` (hierarchical), or `by design` (fixed by configuration, measured from the
run: a zero-width interval that is labelled, not evidence). With fewer than two samples there is no
interval (`ci` is [None, None]) and every check on it is inconclusive.

Intervals are percentile bootstraps (scipy.stats.bootstrap where one sample suffices; the
hierarchical and stratified resamplings, which scipy does not offer, follow rliable's stratified
bootstrap). Arms that share seeds or items are compared on their paired differences, which removes
what the arms have in common from the interval. Resampling is seeded, so an interval is a
deterministic function of its data.
"""
from __future__ import annotations

import statistics
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000
SEED = 0


def effect(value: float | None, lo: float | None, hi: float | None, n: int, unit: str, **extra) -> dict:
    """The record a check reads; `extra` carries descriptive fields (samples, item interval, ...)."""
    f = lambda x: None if x is None else float(x)  # noqa: E731
    return {"value": f(value), "ci": [f(lo), f(hi)], "n": int(n), "unit": unit, **extra}


def by_design(value: float, why: str) -> dict:
    """A quantity configuration fixes, measured from the run: labelled, with a zero-width interval."""
    return effect(value, value, value, 1, "by design", note=why)


def unmeasured(reason: str) -> dict:
    """An effect this run could not measure: a check on it is inconclusive, with the reason."""
    return {"value": None, "ci": [None, None], "n": 0, "unit": "none", "reason": reason}


def is_effect(obj) -> bool:
    return isinstance(obj, dict) and "value" in obj and "ci" in obj


def _percentile(stats: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap(data: Sequence[float], unit: str = "seeds", statistic: Callable = np.mean,
              seed: int = SEED, **extra) -> dict:
    """`statistic` of one sample with a percentile-bootstrap interval over its entries."""
    from scipy.stats import bootstrap as scipy_bootstrap

    x = np.asarray(data, dtype=float)
    value = float(statistic(x))
    if x.size < 2:
        return effect(value, None, None, x.size, unit, **extra)
    if np.all(x == x[0]):  # every resample is the same: a zero-width interval (scipy warns instead)
        return effect(value, value, value, x.size, unit, **extra)
    res = scipy_bootstrap((x,), statistic, confidence_level=LEVEL, n_resamples=RESAMPLES, method="percentile",
                          vectorized=True, axis=-1, rng=np.random.default_rng(seed))
    return effect(value, res.confidence_interval.low, res.confidence_interval.high, x.size, unit, **extra)


def mean_ci(samples: Sequence[float], unit: str = "seeds", seed: int = SEED, **extra) -> dict:
    """Mean over seeds (or items) with its interval; the samples are kept for figures."""
    return bootstrap(samples, unit, np.mean, seed, samples=[float(v) for v in samples], **extra)


def paired_diff(a: Sequence[float], b: Sequence[float], unit: str = "seeds", seed: int = SEED) -> dict:
    """Mean of a - b over what the arms share (seeds, or items), with its interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    return mean_ci(a - b, unit, seed)


def median_ratio(ratios: Sequence[float], seed: int = SEED) -> dict:
    """Median of per-pair ratios (timing) with its interval over the pairs."""
    return bootstrap(ratios, "pairs", np.median, seed)


def speedup(pair_times: dict, seed: int = SEED) -> dict:
    """Baseline / variant time of each interleaved pair (repro.core.timing) -> the median ratio with
    its interval over pairs, the median seconds of both sides, and the ratios themselves."""
    ratios = [b / v for b, v in zip(pair_times["baseline_s"], pair_times["variant_s"])]
    return {**median_ratio(ratios, seed), "seconds": statistics.median(pair_times["variant_s"]),
            "baseline_seconds": statistics.median(pair_times["baseline_s"]), "ratios": ratios}


def _resample_means(rng: np.random.Generator, items: np.ndarray, count: int) -> np.ndarray:
    """`count` bootstrap means of one seed's items."""
    if count == 0:
        return np.empty(0)
    return items[rng.integers(0, items.size, (count, items.size))].mean(1)


def hierarchical(per_seed: Sequence[Sequence[float]], seed: int = SEED) -> dict:
    """Mean over seeds of each seed's item mean. The interval resamples seeds, then items within each
    chosen seed (both sources of noise); `ci_items` resamples items only, seeds held fixed (what one
    more evaluation set would change). Pass per-item differences for a paired comparison."""
    seeds = [np.asarray(s, float) for s in per_seed]
    means = np.array([s.mean() for s in seeds])
    value = float(means.mean())
    n_items = int(sum(s.size for s in seeds))
    rng = np.random.default_rng(seed)
    # items only: each seed's item mean resampled, seeds fixed
    item_stats = np.mean([_resample_means(rng, s, RESAMPLES) for s in seeds], axis=0)
    ci_items = list(_percentile(item_stats)) if n_items > len(seeds) else [value, value]
    if len(seeds) < 2:
        return effect(value, None, None, len(seeds), "seeds x items", ci_items=ci_items, n_items=n_items,
                      samples=means.tolist())
    picks = rng.integers(0, len(seeds), (RESAMPLES, len(seeds)))
    draws = np.empty(picks.shape)
    for s, items in enumerate(seeds):  # a fresh item resample for every time a seed is picked
        where = picks == s
        draws[where] = _resample_means(rng, items, int(where.sum()))
    lo, hi = _percentile(draws.mean(1))
    return effect(value, lo, hi, len(seeds), "seeds x items", ci_items=ci_items, n_items=n_items,
                  samples=means.tolist())


def seed_pairs(a: dict, b: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two arms' per-item values seed by seed ({seed: array of items}); they must share seeds and
    items (same order), so comparisons are paired by (seed, item)."""
    seeds = sorted(a)
    if seeds != sorted(b) or any(np.shape(a[s]) != np.shape(b[s]) for s in seeds):
        raise ValueError(f"arms are not paired: seeds {seeds} vs {sorted(b)}, items per seed "
                         f"{[np.size(a[s]) for s in seeds]} vs {[np.size(b[s]) for s in sorted(b)]}")
    return [(np.asarray(a[s], float), np.asarray(b[s], float)) for s in seeds]


def hierarchical_diff(a: dict, b: dict) -> dict:
    """Mean of a minus b over seeds x items, paired by (seed, item) ({seed: items} each)."""
    return hierarchical([x - y for x, y in seed_pairs(a, b)])


def hierarchical_ratio(a: dict, b: dict, zero: str) -> dict:
    """R = mean over seeds of a's item mean / that of b, paired by (seed, item) ({seed: items}
    each). The interval is the hierarchical bootstrap of the linearised ratio (delta method): per
    item z = R + (a - R b) / mean(b), whose mean is R exactly and whose resampled means move as a
    resampled ratio of means does, to first order. `zero` says why there is no ratio when b's mean
    is 0."""
    pairs = seed_pairs(a, b)
    den = float(np.mean([y.mean() for _, y in pairs]))
    if den <= 0:
        return unmeasured(zero)
    r = float(np.mean([x.mean() for x, _ in pairs])) / den
    return hierarchical([r + (x - r * y) / den for x, y in pairs])


def stratified(strata: Sequence[Sequence[float]], statistic: Callable[[list[np.ndarray]], float],
               unit: str = "pairs", seed: int = SEED) -> dict:
    """`statistic` of several samples (e.g. one per timing cell) with an interval from resampling
    each sample within itself (rliable's stratified bootstrap)."""
    xs = [np.asarray(s, float) for s in strata]
    value = float(statistic(xs))
    n = int(sum(x.size for x in xs))
    if min(x.size for x in xs) < 2:
        return effect(value, None, None, n, unit)
    rng = np.random.default_rng(seed)
    draws = [x[rng.integers(0, x.size, (RESAMPLES, x.size))] for x in xs]
    stats = np.array([statistic([d[r] for d in draws]) for r in range(RESAMPLES)])
    lo, hi = _percentile(stats)
    return effect(value, lo, hi, n, unit)


def shift(e: dict, by: float, **extra) -> dict:
    """The same effect minus a fixed offset (e.g. a rise beyond a given spread)."""
    lo, hi = e["ci"]
    sub = lambda x: None if x is None else x - by  # noqa: E731
    return {**e, "value": sub(e["value"]), "ci": [sub(lo), sub(hi)], **extra}


def lead(a: dict, others: dict[str, dict]) -> dict:
    """How far interval `a` lies above every other interval: [a.lo - max(other hi), a.hi - max(other
    lo)]. Its lower end is > 0 exactly when `a`'s interval is above all the others (non-overlapping),
    its upper end < 0 when one other interval lies wholly above `a`'s."""
    if not others:
        return unmeasured("no other family to compare with")
    ends = [e["ci"] for e in (a, *others.values())]
    if any(x is None for lo_hi in ends for x in lo_hi):
        return effect(a["value"] - max(o["value"] for o in others.values()), None, None, a["n"], a["unit"])
    lo = a["ci"][0] - max(o["ci"][1] for o in others.values())
    hi = a["ci"][1] - max(o["ci"][0] for o in others.values())
    best = max(others, key=lambda k: others[k]["value"])
    return effect(a["value"] - others[best]["value"], lo, hi, a["n"], f"{a['unit']} (interval non-overlap)",
                  runner_up=best)


def prob_improvement(a: Sequence[float], b: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 for X from `a`, Y from `b` (rliable's probability of improvement)."""
    x, y = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float(((x > y) + 0.5 * (x == y)).mean())


def spread(values: Sequence[float]) -> dict:
    """mean, sample std (0 for one value), min, max, n: the descriptive row of a table."""
    v = list(values)
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v), "max": max(v), "n": len(v)}
