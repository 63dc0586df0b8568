"""Effects with 95% intervals that mean their 95%: what every claim check reads (design.md "Verdicts").

An effect is a record `{"value", "ci": [lo, hi], "n", "unit", "method", "ci_levels"}`; `unit` says
what was resampled: `seeds` (training-dependent effects), `pairs` (interleaved timing pairs), `items`
(test items of one model), `seeds x items` (every seed evaluated on one shared test set), or
`by design` (fixed by configuration, measured from the run: a zero-width interval that is labelled,
not evidence). With fewer than two samples there is no interval (`ci` is [None, None]) and every
check on it is inconclusive. `ci_levels` holds the same interval at the Holm/Bonferroni levels
1 - 0.05/m, m = 1..HOLM_MAX (m = 1 is `ci`), so a claim with several checks can adjust
(repro.report.verdicts).

Methods, chosen by the design that produced the numbers (the calibration test in
tests/test_calibration.py simulates each and asserts 93-97% coverage):
- seeds: Student-t over the seed values (`mean_ci`, `paired_diff`; Welch for two disjoint seed sets,
  `unpaired_diff`); a smooth statistic of several seeds' curves: jackknife-t (`jackknife`). A
  percentile bootstrap over 3 seeds is their [min, max] and covers about 75%: it is refused here.
- seeds x shared items (`hierarchical`): every seed is scored on the same items, so the item
  effects are common to all seeds and averaging over seeds cannot shrink them. The grand mean is a
  seed part (the seed means' standard error, S - 1 degrees of freedom) plus a shared item part (its
  standard error from the crossed layout's mean squares); the t quantile takes (S - 1) / c^2 degrees
  of freedom, c^2 the seed part's share (`crossed_halfwidth`). Dependent items (QAs of one
  conversation, tasks of one run order) are first summed into their clusters (`clusters=`).
- timing pairs: the median of per-pair ratios with the sign test's distribution-free interval,
  widened for autocorrelation between neighbouring pairs (`speedup`, `median_ratio`); statistics of
  several variants timed in the same pairs: a joint moving-block bootstrap (`joint_bootstrap`,
  `stratified` for independent cells); items of one model: `bootstrap`. Resampling is seeded, so an
  interval is a deterministic function of its data.
- timing against its A/A control (`against_aa`): the variant's interval is widened by the factor
  the A/A interval leaves 1 by, so a check is undecided exactly when noise of the A/A's size could
  move it across its threshold.
"""
from __future__ import annotations

import math
import statistics
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
ALPHA = 1 - LEVEL
HOLM_MAX = 8  # adjusted intervals for claims of up to 8 checks
RESAMPLES = 4000
SEED = 0


def holm_levels(m_max: int = HOLM_MAX) -> list[float]:
    """1 - 0.05/m for m = 1..m_max: the levels `ci_levels` lists."""
    return [1 - ALPHA / m for m in range(1, m_max + 1)]


def _f(x):
    return None if x is None else float(x)


def effect(value: float | None, lo: float | None, hi: float | None, n: int, unit: str, **extra) -> dict:
    """The record a check reads; `extra` carries descriptive fields (samples, item interval, ...)
    and, from the interval functions, `method` and `ci_levels`."""
    return {"value": _f(value), "ci": [_f(lo), _f(hi)], "n": int(n), "unit": unit, **extra}


def by_design(value: float, why: str) -> dict:
    """A quantity configuration fixes, measured from the run: labelled, with a zero-width interval."""
    return effect(value, value, value, 1, "by design", note=why)


def unmeasured(reason: str) -> dict:
    """An effect this run could not measure: a check on it is inconclusive, with the reason."""
    return {"value": None, "ci": [None, None], "n": 0, "unit": "none", "reason": reason}


def is_effect(obj) -> bool:
    return isinstance(obj, dict) and "value" in obj and "ci" in obj


def at_level(e: dict, m: int) -> list | None:
    """The effect's interval at level 1 - 0.05/m (m = 1: its 95% interval); None where the record
    carries no such level (then no adjusted decision can be made on it)."""
    if m == 1:
        return e["ci"]
    levels = e.get("ci_levels")
    return levels[m - 1] if levels and len(levels) >= m else None


# ---------------------------------------------------------------- Student-t (seeds)
def t_bounds(mean, se, df, level: float = LEVEL):
    """mean -+ t_{df, (1+level)/2} se, elementwise (arrays broadcast; the calibration test runs
    thousands of simulated data sets through this one call)."""
    from scipy.stats import t

    q = t.ppf((1 + level) / 2, df)
    return mean - q * se, mean + q * se


def t_effect(value: float, se: float, df: float, n: int, unit: str, method: str, **extra) -> dict:
    """An effect whose interval is value -+ t se, at 95% and at every Holm level."""
    levels = [[float(x) for x in t_bounds(value, se, df, lv)] for lv in holm_levels()]
    return effect(value, *levels[0], n, unit, method=method, se=float(se), df=float(df), ci_levels=levels, **extra)


def t_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and standard error over the last axis, and the degrees of freedom."""
    n = x.shape[-1]
    return x.mean(-1), x.std(-1, ddof=1) / math.sqrt(n), n - 1


def mean_ci(samples: Sequence[float], unit: str = "seeds", **extra) -> dict:
    """Mean over seeds (or items) with its Student-t interval; the samples are kept for figures."""
    x = np.asarray(samples, dtype=float)
    extra = {"samples": x.tolist(), **extra}
    if x.size < 2:
        return effect(x.mean() if x.size else None, None, None, x.size, unit, **extra)
    mean, se, df = t_stats(x)
    return t_effect(mean, se, df, x.size, unit, "Student-t", **extra)


def paired_diff(a: Sequence[float], b: Sequence[float], unit: str = "seeds") -> dict:
    """Mean of a - b over what the arms share (seeds, or items), with its Student-t interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    return mean_ci(a - b, unit)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference of means over the last axis, its standard error and Welch's degrees of freedom."""
    va, vb = a.var(-1, ddof=1) / a.shape[-1], b.var(-1, ddof=1) / b.shape[-1]
    se2 = va + vb
    with np.errstate(invalid="ignore", divide="ignore"):
        df = se2 ** 2 / (va ** 2 / (a.shape[-1] - 1) + vb ** 2 / (b.shape[-1] - 1))
    df = np.where(np.isfinite(df), df, min(a.shape[-1], b.shape[-1]) - 1)
    return a.mean(-1) - b.mean(-1), np.sqrt(se2), df


def unpaired_diff(a: Sequence[float], b: Sequence[float], unit: str = "seeds") -> dict:
    """Mean of a minus mean of b for two independent sets (disjoint seeds): Welch's t interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if min(a.size, b.size) < 2:
        return effect(a.mean() - b.mean(), None, None, a.size + b.size, unit)
    diff, se, df = welch(a, b)
    return t_effect(diff, se, df, a.size + b.size, unit, "Welch t", n_a=int(a.size), n_b=int(b.size))


def jackknife(n: int, statistic: Callable[[np.ndarray], float], unit: str = "seeds", **extra) -> dict:
    """A smooth statistic of n seeds (it receives the indices of the seeds to use): the estimate on
    all seeds, with a jackknife standard error and a t_{n-1} interval. For a mean it is Student-t."""
    idx = np.arange(n)
    value = float(statistic(idx))
    if n < 2:
        return effect(value, None, None, n, unit, **extra)
    leave_out = np.array([statistic(np.delete(idx, i)) for i in range(n)], dtype=float)
    se = math.sqrt((n - 1) / n * float(((leave_out - leave_out.mean()) ** 2).sum()))
    return t_effect(value, se, n - 1, n, unit, "jackknife-t", **extra)


# ---------------------------------------------------------------- seeds x shared items
def crossed_parts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeds x items layout y[..., S, I] (items shared by every seed) split into what its grand
    mean owes to each source: the grand mean, the standard error of the seed means (seed noise plus
    each seed's residual item noise; S - 1 degrees of freedom) and the standard error of the shared
    item effects, which every seed carries alike and which averaging over seeds cannot shrink:
    Var(item mean) = s2_item / I, estimated from the crossed layout's mean squares,
    E[MS_items - MS_residual] = S s2_item."""
    s, i = y.shape[-2:]
    grand = y.mean((-2, -1))
    seed_m, item_m = y.mean(-1), y.mean(-2)
    se_seeds = seed_m.std(-1, ddof=1) / math.sqrt(s)
    ms_i = s * ((item_m - grand[..., None]) ** 2).sum(-1) / (i - 1)
    resid = y - seed_m[..., :, None] - item_m[..., None, :] + grand[..., None, None]
    ms_r = (resid ** 2).sum((-2, -1)) / ((s - 1) * (i - 1))
    return grand, se_seeds, np.sqrt(np.maximum(ms_i - ms_r, 0.0) / (s * i))


def crossed_halfwidth(se_seeds, se_items, df: int, level: float = LEVEL):
    """Half-width of the crossed interval: t quantile x sqrt(se_seeds^2 + se_items^2), with
    df / c^2 degrees of freedom, c^2 the seed part's share of the variance (t_df when the seeds are
    all of it, normal when the precisely known item part is). Welch-Satterthwaite's df / c^4 is
    liberal at 2-4 seed degrees of freedom (simulated coverage down to 0.92) and the Behrens-Fisher
    quantile conservative (up to 0.976); df / c^2 keeps 0.94-0.965 across the share (see
    tests/test_calibration.py). Elementwise."""
    var = np.square(se_seeds) + np.square(se_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(var > 0, np.square(se_seeds) / np.where(var > 0, var, 1.0), 1.0)
        dof = np.where(share > 0, df / np.where(share > 0, share, 1.0), np.inf)
    return np.asarray(t_bounds(0.0, np.sqrt(var), dof, level)[1])


def cluster_sums(y: np.ndarray, clusters: Sequence) -> np.ndarray:
    """Seeds x items y[..., S, I] -> seeds x clusters of linearised values whose mean is the item
    mean: per cluster c, R + (sum_c - R n_c) / mean(n), with R the grand item mean. Items of one
    cluster share what makes them dependent (one conversation's memory), so the cluster is the unit."""
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    onehot = np.eye(inverse.max() + 1)[inverse]  # items x clusters
    counts = onehot.sum(0)
    r = y.mean((-2, -1), keepdims=True)
    return r + (y @ onehot - r * counts) / counts.mean()


def hierarchical(per_seed: Sequence[Sequence[float]], clusters: Sequence | None = None) -> dict:
    """Mean over seeds x items when every seed is scored on the same items (one test set), with the
    crossed interval (`crossed`); `clusters` labels dependent items (one label per item, the same for
    every seed). `ci_items` holds the seeds fixed (what one more evaluation set would change), for
    description. Pass per-item differences for a paired comparison."""
    seeds = [np.asarray(s, float) for s in per_seed]
    if len({s.size for s in seeds}) != 1:
        raise ValueError(f"hierarchical: every seed must be scored on the same items, got sizes "
                         f"{[s.size for s in seeds]}")
    y = np.stack(seeds)
    n_items = y.shape[1]
    if clusters is not None:
        if len(clusters) != n_items:
            raise ValueError(f"hierarchical: {len(clusters)} cluster labels for {n_items} items")
        y = cluster_sums(y, clusters)
    means = y.mean(1)
    value = float(y.mean())
    extra = {"n_items": int(n_items), "samples": means.tolist()}
    if clusters is not None:
        extra["n_clusters"] = int(y.shape[1])
    units = "seeds x items" if clusters is None else "seeds x clusters"
    if y.shape[1] > 1:  # items only: the item means over seeds, seeds held fixed
        item_mean, se_i, df_i = t_stats(y.mean(0))
        extra["ci_items"] = [float(x) for x in t_bounds(item_mean, se_i, df_i)]
    else:
        extra["ci_items"] = [value, value]
    if y.shape[0] < 2:
        return effect(value, None, None, y.shape[0], units, **extra)
    if y.shape[1] < 2:
        return t_effect(value, *t_stats(means)[1:], y.shape[0], units, "Student-t", **extra)
    _, se_seeds, se_items = crossed_parts(y)
    df = y.shape[0] - 1
    levels = [[value - h, value + h] for h in (float(crossed_halfwidth(se_seeds, se_items, df, lv))
                                               for lv in holm_levels())]
    return effect(value, *levels[0], y.shape[0], units, method=f"crossed {units}: seed part (t, {df} df) + "
                  "shared item part", se_seeds=float(se_seeds), se_items=float(se_items),
                  ci_levels=levels, **extra)


def seed_pairs(a: dict, b: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two arms' per-item values seed by seed ({seed: array of items}); they must share seeds and
    items (same order), so comparisons are paired by (seed, item)."""
    seeds = sorted(a)
    if seeds != sorted(b) or any(np.shape(a[s]) != np.shape(b[s]) for s in seeds):
        raise ValueError(f"arms are not paired: seeds {seeds} vs {sorted(b)}, items per seed "
                         f"{[np.size(a[s]) for s in seeds]} vs {[np.size(b[s]) for s in sorted(b)]}")
    return [(np.asarray(a[s], float), np.asarray(b[s], float)) for s in seeds]


def hierarchical_diff(a: dict, b: dict, clusters: Sequence | None = None) -> dict:
    """Mean of a minus b over seeds x items, paired by (seed, item) ({seed: items} each)."""
    return hierarchical([x - y for x, y in seed_pairs(a, b)], clusters)


def hierarchical_ratio(a: dict, b: dict, zero: str, clusters: Sequence | None = None) -> dict:
    """R = mean over seeds of a's item mean / that of b, paired by (seed, item) ({seed: items}
    each). The interval is the crossed one of the linearised ratio (delta method): per item
    z = R + (a - R b) / mean(b), whose mean is R exactly and whose mean moves as a ratio of means
    does, to first order. `zero` says why there is no ratio when b's mean is 0."""
    pairs = seed_pairs(a, b)
    den = float(np.mean([y.mean() for _, y in pairs]))
    if den <= 0:
        return unmeasured(zero)
    r = float(np.mean([x.mean() for x, _ in pairs])) / den
    return hierarchical([r + (x - r * y) / den for x, y in pairs], clusters)


# ---------------------------------------------------------------- bootstrap (large samples)
def block_indices(rng: np.random.Generator, n: int, count: int, block: int) -> np.ndarray:
    """`count` moving-block resamples of range(n): blocks of `block` neighbours, starts uniform."""
    if block <= 1:
        return rng.integers(0, n, (count, n))
    k = -(-n // block)
    starts = rng.integers(0, n - block + 1, (count, k))
    return (starts[..., None] + np.arange(block)).reshape(count, -1)[:, :n]


def default_block(n: int) -> int:
    """Block length for timing pairs: ~n^(1/3), the usual order for a moving-block bootstrap."""
    return max(1, round(n ** (1 / 3)))


def percentile_levels(stats: np.ndarray) -> list[list[float]]:
    """Percentile intervals of bootstrap statistics (last axis) at every Holm level."""
    out = []
    for lv in holm_levels():
        tail = 100 * (1 - lv) / 2
        lo, hi = np.percentile(stats, [tail, 100 - tail], axis=-1)
        out.append([float(lo), float(hi)])
    return out


def bootstrap(data: Sequence[float], unit: str = "items", statistic: Callable = np.mean, seed: int = SEED,
              block: int = 1, **extra) -> dict:
    """`statistic` (vectorised over the last axis) of one large sample, with a percentile-bootstrap
    interval; `block` > 1 resamples moving blocks of neighbours (timing pairs in time order)."""
    if unit == "seeds":
        raise ValueError("a percentile bootstrap over seeds undercovers (3 seeds: their [min, max], ~75%); "
                         "use mean_ci, paired_diff or jackknife")
    x = np.asarray(data, dtype=float)
    value = float(statistic(x))
    if x.size < 2:
        return effect(value, None, None, x.size, unit, **extra)
    rng = np.random.default_rng(seed)
    stats = statistic(x[block_indices(rng, x.size, RESAMPLES, block)])
    levels = percentile_levels(stats)
    method = "percentile bootstrap" + (f", blocks of {block}" if block > 1 else "")
    return effect(value, *levels[0], x.size, unit, method=method, ci_levels=levels, **extra)


def joint_bootstrap(columns: Sequence[Sequence[float]], statistic: Callable[[np.ndarray], np.ndarray],
                    unit: str = "pairs", seed: int = SEED, block: int = 1, **extra) -> dict:
    """`statistic` of several samples measured side by side (column j, row i: the i-th timing pair of
    variant j), resampling rows jointly so what the columns share stays shared. `statistic` takes an
    array [..., rows, columns] and returns [...]."""
    x = np.stack([np.asarray(c, float) for c in columns], axis=-1)
    value = float(statistic(x))
    n = x.shape[0]
    if n < 2:
        return effect(value, None, None, n, unit, **extra)
    rng = np.random.default_rng(seed)
    stats = statistic(x[block_indices(rng, n, RESAMPLES, block)])
    levels = percentile_levels(stats)
    return effect(value, *levels[0], n, unit, method="joint percentile bootstrap" + (
        f", blocks of {block}" if block > 1 else ""), ci_levels=levels, **extra)


def stratified(strata: Sequence[Sequence[float]], statistic: Callable[[list[np.ndarray]], float],
               unit: str = "pairs", seed: int = SEED, block: int = 1) -> dict:
    """`statistic` of several independent samples (e.g. one per timing cell) with an interval from
    resampling each sample within itself (rliable's stratified bootstrap)."""
    xs = [np.asarray(s, float) for s in strata]
    value = float(statistic(xs))
    n = int(sum(x.size for x in xs))
    if min(x.size for x in xs) < 2:
        return effect(value, None, None, n, unit)
    rng = np.random.default_rng(seed)
    draws = [x[block_indices(rng, x.size, RESAMPLES, block)] for x in xs]
    stats = np.array([statistic([d[r] for d in draws]) for r in range(RESAMPLES)])
    levels = percentile_levels(stats)
    return effect(value, *levels[0], n, unit, method="stratified percentile bootstrap", ci_levels=levels)


def median_bounds(x: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free interval for the median of x[..., n] (values in time order): the order
    statistics n/2 -+ z sqrt(n f)/2, the sign test's interval, with f >= 1 the long-run variance
    factor of the signs about the median (Bartlett weights over ~n^(1/3) lags), so neighbouring pairs
    that share the machine's state do not count as independent. Elementwise over leading axes."""
    from scipy.stats import norm

    n = x.shape[-1]
    ranked = np.sort(x, -1)
    signs = (x <= np.median(x, -1, keepdims=True)).astype(float)
    signs -= signs.mean(-1, keepdims=True)
    var0 = (signs ** 2).mean(-1)
    lags = default_block(n)
    f = np.ones(x.shape[:-1])
    for k in range(1, lags + 1):
        rho = (signs[..., k:] * signs[..., :-k]).sum(-1) / n / np.where(var0 > 0, var0, 1.0)
        f = f + 2 * (1 - k / (lags + 1)) * rho
    half = norm.ppf((1 + level) / 2) * np.sqrt(n * np.maximum(f, 1.0)) / 2
    j_lo = np.clip(np.floor(n / 2 - half).astype(int), 0, n - 1)
    j_hi = np.clip(np.ceil(n / 2 + half).astype(int) - 1, 0, n - 1)
    pick = lambda j: np.take_along_axis(ranked, j[..., None], -1)[..., 0]  # noqa: E731
    return pick(j_lo), pick(j_hi)


def median_ratio(ratios: Sequence[float]) -> dict:
    """Median of per-pair ratios (timing pairs in time order) with its sign-test interval."""
    x = np.asarray(ratios, float)
    value = float(np.median(x))
    if x.size < 2:
        return effect(value, None, None, x.size, "pairs")
    levels = [[float(b) for b in median_bounds(x, lv)] for lv in holm_levels()]
    return effect(value, *levels[0], x.size, "pairs", method="sign-test interval for the median, "
                  "autocorrelation-inflated", ci_levels=levels)


def speedup(pair_times: dict) -> dict:
    """Baseline / variant time of each interleaved pair (repro.core.timing) -> the median ratio with
    its interval over pairs, the median seconds of both sides, and the ratios themselves."""
    ratios = [b / v for b, v in zip(pair_times["baseline_s"], pair_times["variant_s"])]
    return {**median_ratio(ratios), "seconds": statistics.median(pair_times["variant_s"]),
            "baseline_seconds": statistics.median(pair_times["baseline_s"]), "ratios": ratios}


def aa_factor(aa_ci: Sequence) -> float | None:
    """How far an A/A ratio interval leaves 1, as a factor >= 1 (None without an interval)."""
    lo, hi = aa_ci
    if lo is None or lo <= 0:
        return None
    return max(1.0, hi, 1 / lo)


def against_aa(e: dict, aa: dict) -> dict:
    """A positive timing effect (a speedup, a time share, an efficiency) judged against its job's A/A
    control: every interval of `e` is widened by the factor the A/A interval of the same level
    leaves 1 by, [lo / f, hi * f]. A check is then undecided exactly when timing noise of the size
    the A/A shows could move the effect across the threshold. The unwidened interval is kept."""
    if e["value"] is None:
        return e
    f = aa_factor(aa["ci"])
    out = {**e, "aa": {"value": aa["value"], "ci": aa["ci"]}, "ci_unwidened": e["ci"]}
    if f is None:
        return {**out, "unstable": "the A/A control has no interval"}
    levels = []
    for m in range(1, HOLM_MAX + 1):
        ci, ci_aa = at_level(e, m), at_level(aa, m)
        fm = aa_factor(ci_aa) if ci_aa else None
        if ci is None or fm is None or ci[0] is None:
            break
        levels.append([ci[0] / fm, ci[1] * fm])
    lo, hi = e["ci"]
    return {**out, "ci": [lo / f, hi * f], "aa_factor": f, "ci_levels": levels or None}


def min_over(samples: dict[str, Sequence[float]], unit: str = "seeds") -> dict:
    """The smallest of several means over seeds (each point of a curve, each candidate) for a check
    that every one of them satisfies `>= t`. Lower end: the smallest 95% lower end (every point
    above t at 95% is an intersection-union test, no adjustment needed). Upper end: the smallest
    upper end of Bonferroni intervals over the k points (some point below t, with a simultaneous
    band). `ci_levels` adjusts the same way for Holm over the claim's checks."""
    rows = {k: np.asarray(v, float) for k, v in samples.items()}
    if not rows:
        return unmeasured("no point to compare")
    k = len(rows)
    means = {name: x.mean() for name, x in rows.items()}
    worst = min(means, key=means.get)
    n = min(x.size for x in rows.values())
    if n < 2:
        return effect(means[worst], None, None, n, unit, worst=worst, points=k)

    def band(m: int) -> list[float]:
        lo = min(t_bounds(*t_stats(x)[:2], x.size - 1, 1 - ALPHA / m)[0] for x in rows.values())
        hi = min(t_bounds(*t_stats(x)[:2], x.size - 1, 1 - ALPHA / (m * k))[1] for x in rows.values())
        return [float(lo), float(hi)]

    levels = [band(m) for m in range(1, HOLM_MAX + 1)]
    return effect(means[worst], *levels[0], n, unit, method=f"min over {k} points: t lower ends, Bonferroni "
                  f"upper ends", ci_levels=levels, worst=worst, points=k,
                  by_point={name: float(v) for name, v in means.items()})


def prob_improvement(a: Sequence[float], b: Sequence[float]) -> float:
    """P(X > Y) + P(X = Y) / 2 for X from `a`, Y from `b` (rliable's probability of improvement)."""
    x, y = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float(((x > y) + 0.5 * (x == y)).mean())


def spread(values: Sequence[float]) -> dict:
    """mean, sample std (0 for one value), min, max, n: the descriptive row of a table."""
    v = list(values)
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v), "max": max(v), "n": len(v)}
