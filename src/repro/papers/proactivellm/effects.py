"""The effects that decide A1-A3, with 95% intervals over seeds, from the evaluate metrics of every
(task, arm, seed); item-level intervals from the per-item arrays; the report tables.

Quality is in [0, 1] (BLEU / 100 or accuracy); latency is AL in source words. Every per-seed
quantity compares arms of the same seed (paired), and the effect is its mean over seeds with a
bootstrap interval over seeds (repro.report.intervals). `ci_items` resamples the test items instead
(the same items for every arm and seed), seeds held fixed.

Curves. One seed's points of one policy (a decision head's tau sweep, wait-k's k sweep) form a curve.
Its quality at AL x is the best quality its points reach at AL <= x, linear between points (the
frontier one picks from under a latency budget; for wait-k, the best k); its AL at quality q is the
lowest AL at which it reaches q. Two curves are matched over the range both cover: AL from the larger
of their lowest ALs to the smaller of their highest; quality from the larger of their qualities at the
lowest AL to the smaller of their best qualities.

A1, per task, the V3 entropy and attention heads against the same seed's V1 wait-k curve:
  (a) matched quality: mean over the shared quality range of AL(wait-k) - AL(head) (> 0: lower AL);
  (b) matched AL: mean over the shared AL range of quality(head) - quality(wait-k) (> 0: higher).
  (a) is undefined when V3's read-all quality is below keep x V0's (the mean over seeds of the
  per-seed ratio): then (b) decides. The claim is "(a) or (b)" for "the entropy (or attention)
  head", so the task's effect is the candidate whose interval gives the best verdict against > 0
  (reproduced, then inconclusive, then not reproduced; ties: entropy before attention, (a) before
  (b)); `decided_by` names it. Choosing among four candidates is the spec's "either ... or", and it
  makes the check easier to pass than any one of them alone: the report lists all four.
A2: entropy AUROC V3 - V2 and V2 - V0, paired by seed.
A3, per task and head: the smallest quality gap head - wait-k over the shared AL range (exact: at the
  knots of both curves), per seed. "On or above" under noise: equality cannot be shown from a
  sample, so the check (interval >= 0) reproduces only when the worst gap's interval lies at or
  above 0, i.e. the head is above the wait-k curve everywhere beyond the seed noise; a head on the
  curve within noise is inconclusive; below it somewhere in every resample, not reproduced. The
  minimum over many AL points is biased low under noise, which makes this reading strict; no
  tolerance is added (the spec has none).
"""
from __future__ import annotations

import numpy as np

from repro.papers.proactivellm._metrics import from_sums, resampled_auroc
from repro.report import intervals as iv
from repro.report.verdicts import INCONCLUSIVE, NOT_CHECKABLE, NOT_REPRODUCED, REPRODUCED, decide_check, fmt_number

HEADS = ("entropy", "maxprob", "attention")
A1_HEADS = ("entropy", "attention")  # the spec: "the V3 entropy (or attention) head"
BRANCHES = {"a": "(a) AL at matched quality: AL(wait-k) - AL(head), source words",
            "b": "(b) quality at matched AL: quality(head) - quality(wait-k)"}
PROPOSED, MSM, FULL, WAITK_ARM, ORACLE_ARM = "v3", "v2", "v0", "v1", "v4"
GRID = 257  # points of the shared range a mean gap averages over
ITEM_RESAMPLES = 1000  # item-level intervals are descriptive (tables); the checks use intervals.RESAMPLES


def curve(points: list[dict], policy: str) -> list[dict]:
    return sorted((p for p in points if p["policy"] == policy), key=lambda p: p["al"])


class Curve:
    """A latency-quality frontier from one policy's points (at equal AL the better point counts)."""

    def __init__(self, points: list[dict], key: str = "al"):
        xs, ys = [], []
        for x, y in sorted((p[key], p["quality"]) for p in points):
            if xs and x == xs[-1]:
                ys[-1] = max(ys[-1], y)
            else:
                xs.append(x)
                ys.append(y)
        if not xs:
            raise ValueError("a curve needs at least one point")
        self.xs, self.ys = np.asarray(xs, float), np.asarray(ys, float)
        self.top = np.maximum.accumulate(self.ys)  # best quality at or below each point's AL

    @property
    def al_range(self) -> tuple[float, float]:
        return float(self.xs[0]), float(self.xs[-1])

    @property
    def quality_range(self) -> tuple[float, float]:
        return float(self.ys[0]), float(self.top[-1])

    def quality_at(self, x) -> np.ndarray:
        """Best quality at AL <= x (x inside the curve's AL range): the best point so far or the
        segment x lies on, whichever is higher."""
        x = np.asarray(x, float)
        i = np.clip(np.searchsorted(self.xs, x, side="right") - 1, 0, len(self.xs) - 1)
        return np.maximum(self.top[i], np.interp(x, self.xs, self.ys))

    def latency_at(self, q) -> np.ndarray:
        """Lowest AL reaching quality q (q inside the curve's quality range): on the segment into
        the first point that reaches q."""
        q = np.asarray(q, float)
        i = np.searchsorted(self.top, q, side="left")  # first point with quality >= q: a new best
        prev = np.maximum(i - 1, 0)
        x0, y0, x1, y1 = self.xs[prev], self.ys[prev], self.xs[i], self.ys[i]
        slope = np.where(i > 0, (q - y0) / np.where(y1 > y0, y1 - y0, 1.0), 0.0)
        return x0 + slope * (x1 - x0)

    def knots(self) -> np.ndarray:
        """ALs where quality_at bends: the points, and where a segment climbs back to the best so far."""
        rise = (self.ys[:-1] < self.top[:-1]) & (self.ys[1:] > self.top[:-1])
        i = np.flatnonzero(rise)
        back = self.xs[i] + (self.top[i] - self.ys[i]) / (self.ys[i + 1] - self.ys[i]) * (self.xs[i + 1] - self.xs[i])
        return np.concatenate([self.xs, back])


def _shared(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float] | None:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def latency_gain(head: Curve, base: Curve) -> float | None:
    """(a): mean over the shared quality range of base AL - head AL; None when none is shared."""
    r = _shared(head.quality_range, base.quality_range)
    if r is None:
        return None
    q = np.linspace(*r, GRID)
    return float(np.mean(base.latency_at(q) - head.latency_at(q)))


def quality_gain(head: Curve, base: Curve) -> float | None:
    """(b): mean over the shared AL range of head quality - base quality; None when none is shared."""
    r = _shared(head.al_range, base.al_range)
    if r is None:
        return None
    x = np.linspace(*r, GRID)
    return float(np.mean(head.quality_at(x) - base.quality_at(x)))


def worst_gap(head: Curve, base: Curve) -> float | None:
    """A3: the smallest head quality - base quality over the shared AL range (both frontiers are
    linear between their knots, so the knots and the range's ends are every point that matters)."""
    r = _shared(head.al_range, base.al_range)
    if r is None:
        return None
    x = np.concatenate([r, head.knots(), base.knots()])
    x = x[(x >= r[0]) & (x <= r[1])]
    return float(np.min(head.quality_at(x) - base.quality_at(x)))


def _only(points: list[dict], policy: str) -> dict:
    (p,) = curve(points, policy)
    return p


def seed_samples(run: dict) -> dict[str, float | None]:
    """Every per-seed quantity the checks read, from one seed's arms ({arm: {points, auroc}}); None
    where it cannot be measured (no shared range, an AUROC without both labels)."""
    waitk = Curve(curve(run[WAITK_ARM]["points"], "waitk"))
    heads = {h: Curve(curve(run[PROPOSED]["points"], h)) for h in HEADS}
    full = _only(run[FULL]["points"], "read_all")["quality"]
    out = {"a1.read_all_ratio": _only(run[PROPOSED]["points"], "read_all")["quality"] / full if full > 0 else None}
    for h in A1_HEADS:
        out[f"a1.{h}.a"] = latency_gain(heads[h], waitk)
        out[f"a1.{h}.b"] = quality_gain(heads[h], waitk)
    ent = {arm: run[arm]["auroc"]["entropy"] for arm in (FULL, MSM, PROPOSED)}
    diff = lambda a, b: None if ent[a] is None or ent[b] is None else ent[a] - ent[b]  # noqa: E731
    out["a2.v3_minus_v2"], out["a2.v2_minus_v0"] = diff(PROPOSED, MSM), diff(MSM, FULL)
    for h in HEADS:
        out[f"a3.{h}"] = worst_gap(heads[h], waitk)
    return out


def over_seeds(values: list[float | None], seeds: list[int], what: str) -> dict:
    """Mean over the seeds where the quantity was measured, with its interval over seeds."""
    kept = [(s, v) for s, v in zip(seeds, values) if v is not None]
    if not kept:
        return iv.unmeasured(f"{what}: not measurable in any seed")
    return iv.mean_ci([v for _, v in kept], "seeds", seeds=[s for s, _ in kept])


def _verdict(e: dict) -> str:
    return decide_check({"metric": "e", "op": ">", "value": 0}, {"e": e})["verdict"]


def choose_a1(candidates: dict[str, dict[str, dict]]) -> dict:
    """The candidate (head, branch) with the best verdict against > 0; ties in the candidates' order."""
    rank = {REPRODUCED: 0, INCONCLUSIVE: 1, NOT_REPRODUCED: 2, NOT_CHECKABLE: 3}
    order = [(h, b) for h in candidates for b in candidates[h]]
    h, b = min(order, key=lambda hb: rank[_verdict(candidates[hb[0]][hb[1]])])
    e = candidates[h][b]
    # the unit names the candidate, so the claims table shows which branch decided
    unit = e["unit"] if e["value"] is None else f"{e['unit']}, {h} head branch ({b})"
    return {**e, "unit": unit, "decided_by": f"{h} head, branch {BRANCHES[b]}", "head": h, "branch": b}


def decide_task(runs: dict, keep: float) -> dict:
    """A1-A3 effects of one task; runs: {arm: {seed: evaluate metrics}} (arms share their seeds)."""
    seeds = sorted(runs[FULL])
    if any(sorted(r) != seeds for r in runs.values()):
        raise ValueError(f"arms must share seeds: {({a: sorted(r) for a, r in runs.items()})}")
    samples = [seed_samples({arm: r[s] for arm, r in runs.items()}) for s in seeds]
    e = {k: over_seeds([s[k] for s in samples], seeds, k) for k in samples[0]}
    ratio = e["a1.read_all_ratio"]
    defined = ratio["value"] is not None and ratio["value"] >= keep
    candidates = {}
    for h in A1_HEADS:
        a = e[f"a1.{h}.a"] if defined else iv.unmeasured(
            f"V3's read-all quality is {fmt_number(ratio['value'], '.3f')} of V0's (< {keep}): branch (a) undefined")
        candidates[h] = {"a": a, "b": e[f"a1.{h}.b"]}
    auroc = {arm: {h: over_seeds([r[s]["auroc"].get(h) for s in seeds], seeds, f"{arm} {h} AUROC")
                   for h in (*HEADS, "learned") if h in r[seeds[0]]["auroc"]} for arm, r in runs.items()}
    v4 = None
    if ORACLE_ARM in runs:
        pairs = [(runs[ORACLE_ARM][s]["auroc"].get("learned"), runs[PROPOSED][s]["auroc"]["entropy"]) for s in seeds]
        v4 = over_seeds([None if None in p else p[0] - p[1] for p in pairs], seeds, "V4 learned - V3 entropy AUROC")
    oracle = [_only(runs[PROPOSED][s]["points"], "oracle") for s in seeds]
    return {
        "a1": {"effect": choose_a1(candidates), "branch_a_defined": defined, "read_all_ratio": ratio,
               "candidates": candidates,
               "oracle_al": iv.mean_ci([p["al"] for p in oracle], "seeds"),
               "oracle_quality": iv.mean_ci([p["quality"] for p in oracle], "seeds")},
        "a2": {"v3_minus_v2": e["a2.v3_minus_v2"], "v2_minus_v0": e["a2.v2_minus_v0"], "v4_minus_v3": v4,
               "auroc": auroc, "attention_sign": {arm: [r[s]["attention_sign"] for s in seeds] for arm, r in runs.items()}},
        "a3": {h: e[f"a3.{h}"] for h in HEADS},
    }


def decide(tasks: dict, keep: float) -> dict:
    """Per task ({task: {"runs": {arm: {seed: metrics}}}}), then as a1.<task>.*, a2.<task>.*,
    a3.<task>.* for the claim checks."""
    per = {name: decide_task(t["runs"], keep) for name, t in tasks.items()}
    return {claim: {name: per[name][claim] for name in per} for claim in ("a1", "a2", "a3")}


# --- item-level intervals: the test items resampled, seeds held fixed ------------------------------

# what seed_samples reads of each arm: the points of these policies, and the entropy AUROC
NEEDS = {FULL: ({"read_all"}, True), WAITK_ARM: ({"waitk"}, False), PROPOSED: ({"read_all", *HEADS}, True),
         MSM: (set(), True)}


def _resampled_arm(m: dict, arrays, counts: np.ndarray, metric: str, policies: set, entropy: bool) -> dict:
    """One arm and seed under every resample [R]: its `policies`' points (index, quality, AL) and
    its entropy AUROC."""
    n = counts.shape[1]
    idx = [i for i, p in enumerate(m["points"]) if p["policy"] in policies]
    al = counts @ arrays["point_al"][idx].T / n  # [R, points]
    sums = np.einsum("rn,pnk->prk", counts, arrays["point_quality"][idx])
    q = np.stack([from_sums(metric, s, n) for s in sums], 1) if idx else np.empty((len(counts), 0))
    out = {"index": idx, "al": al, "quality": q}
    if entropy and m["auroc"].get("entropy") is not None:
        out["entropy"] = resampled_auroc(arrays["state_entropy"], arrays["state_label"], arrays["state_item"], counts)
    return out


def item_intervals(runs: dict, arrays: dict, metric: str, resamples: int = ITEM_RESAMPLES,
                   seed: int = iv.SEED) -> dict[str, list[float]]:
    """Per sample key (seed_samples), the interval of its mean over seeds when the test items are
    resampled (one resample of items for every arm and seed, so arms stay paired by item)."""
    seeds = sorted(runs[FULL])
    n = arrays[FULL][seeds[0]]["point_al"].shape[1]
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.repeat(np.arange(resamples), n), rng.integers(0, n, resamples * n)), 1)
    res = {(arm, s): _resampled_arm(runs[arm][s], arrays[arm][s], counts, metric, *NEEDS[arm])
           for arm in NEEDS for s in seeds}
    draws: dict[str, list[float]] = {}
    for r in range(resamples):
        per_seed = []
        for s in seeds:
            run = {}
            for arm in NEEDS:
                m, x = runs[arm][s], res[(arm, s)]
                points = [{**m["points"][i], "al": x["al"][r, j], "quality": x["quality"][r, j]}
                          for j, i in enumerate(x["index"])]
                run[arm] = {"points": points, "auroc": {"entropy": x["entropy"][r] if "entropy" in x else None}}
            per_seed.append(seed_samples(run))
        for k in per_seed[0]:
            vals = [v for v in (p[k] for p in per_seed) if v is not None and np.isfinite(v)]
            draws.setdefault(k, []).append(float(np.mean(vals)) if vals else np.nan)
    tail = 100 * (1 - iv.LEVEL) / 2
    return {k: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))]
            for k, v in draws.items() if np.isfinite(v).any()}


def attach_item_intervals(task_metrics: dict, name: str, ci_items: dict[str, list[float]]) -> None:
    """Put each check effect's item-level interval on its record (the A1 effect: its candidate's)."""
    a1, a2, a3 = (task_metrics[c][name] for c in ("a1", "a2", "a3"))
    records = {"a1.read_all_ratio": a1["read_all_ratio"], "a2.v3_minus_v2": a2["v3_minus_v2"],
               "a2.v2_minus_v0": a2["v2_minus_v0"], **{f"a3.{h}": a3[h] for h in HEADS},
               **{f"a1.{h}.{b}": a1["candidates"][h][b] for h in A1_HEADS for b in BRANCHES}}
    for key, record in records.items():
        if key in ci_items and record["value"] is not None:
            record["ci_items"] = ci_items[key]
    chosen = a1["effect"]
    key = f"a1.{chosen['head']}.{chosen['branch']}"
    if key in ci_items and chosen["value"] is not None:
        chosen["ci_items"] = ci_items[key]


# --- report tables -------------------------------------------------------------------------------

def _ci(e: dict | None, key: str = "ci", fmt: str = "+.3f") -> str:
    if e is None or e.get("value") is None:
        return "n/a" if e is None else f"not measured: {e.get('reason', '')}"
    if key not in e:
        return "not resampled"
    lo, hi = e[key]
    return "no interval" if lo is None else f"[{lo:{fmt}}, {hi:{fmt}}]"


def _row(label: str, e: dict, fmt: str = "+.3f") -> str:
    value = "n/a" if e["value"] is None else f"{e['value']:{fmt}}"
    return f"| {label} | {value} | {_ci(e, fmt=fmt)} | {_ci(e, 'ci_items', fmt)} | {e['n']} |"


def _setting(p: dict) -> str:
    return f"k={p['k']}" if "k" in p else (f"q={p['quantile']:.2f}" if "quantile" in p else "")


def mean_points(runs: dict) -> dict[str, list[dict]]:
    """Per arm, each (policy, setting) averaged over seeds (a head's tau differs per seed: its
    quantile of the validation scores is the setting)."""
    out = {}
    for arm, by_seed in runs.items():
        groups: dict[tuple, list[dict]] = {}
        for m in by_seed.values():
            for p in m["points"]:
                groups.setdefault((p["policy"], _setting(p)), []).append(p)
        out[arm] = [{"policy": policy, "setting": setting, "seeds": len(ps),
                     **{k: iv.spread([p[k] for p in ps]) for k in ("quality", "al", "laal", "first_write_fraction")}}
                    for (policy, setting), ps in groups.items()]
    return out


def report_tables(m: dict, tasks: dict, seeds_note: str) -> str:
    lines = ["## Seeds", "", seeds_note, "",
             "Effects: mean over seeds of a per-seed quantity that pairs arms of the same seed; 95% CI over "
             "seeds (the checks) and over test items with seeds fixed (`CI items`, "
             f"{ITEM_RESAMPLES} resamples).", "",
             "Curves: a curve's quality at AL x is the best quality its points reach at AL <= x (linear between "
             "points); its AL at quality q is the lowest AL reaching q (for wait-k: the best k). Two curves are "
             "compared only over the AL (or quality) range both cover. A1 takes, per task, the candidate "
             "(entropy or attention head; branch (a) or (b)) with the best verdict, as the spec's \"either ... "
             "or\"; all four are listed. A3 \"on or above\" under noise: equality cannot be shown from a sample, "
             "so a head reproduces only when the interval of its worst gap is at or above 0 (above the wait-k "
             "curve everywhere beyond the seed noise); a head on the curve within noise is inconclusive; the "
             "minimum over many AL points is biased low under noise, and no tolerance offsets it.", ""]
    for name, t in tasks.items():
        scale = "BLEU / 100" if t["metric"] == "bleu" else "accuracy"
        a1, a2, a3 = m["a1"][name], m["a2"][name], m["a3"][name]
        ratio = a1["read_all_ratio"]
        lines += [f"## {name} (quality = {scale}; AL, LAAL in source words)", "",
                  f"### A1 ({name}): V3 heads against the V1 wait-k curve of the same seed", "",
                  f"V3 read-all quality / V0 read-all quality: {fmt_number(ratio['value'], '.3f')} "
                  f"(CI seeds {_ci(ratio, fmt='.3f')}, CI items {_ci(ratio, 'ci_items', '.3f')}): branch (a) "
                  f"{'defined' if a1['branch_a_defined'] else 'undefined, (b) decides'}. "
                  f"**Decided by: {a1['effect']['decided_by']}.**", "",
                  "| candidate | mean over seeds | 95% CI seeds | 95% CI items | n seeds |", "|---|---|---|---|---|"]
        for h, branches in a1["candidates"].items():
            for b, e in branches.items():
                lines.append(_row(f"{h} head, {BRANCHES[b]}", e) if e["value"] is not None
                             else f"| {h} head, {BRANCHES[b]} | n/a | {_ci(e)} | | 0 |")
        lines += ["", f"Oracle policy on V3: quality {a1['oracle_quality']['value']:.3f}, AL "
                  f"{a1['oracle_al']['value']:.2f} (means over seeds).", "",
                  f"### A2 ({name}): AUROC of each head's score for oracle sufficiency (teacher-forced states)", "",
                  "| arm | entropy | max-prob | attention | oracle-trained head | attention sign per seed |",
                  "|---|---|---|---|---|---|"]
        for arm, au in a2["auroc"].items():
            cells = [f"{au[h]['value']:.3f} {_ci(au[h], fmt='.3f')}" if h in au and au[h]["value"] is not None else "n/a"
                     for h in (*HEADS, "learned")]
            lines.append(f"| {arm} | {' | '.join(cells)} | {a2['attention_sign'][arm]} |")
        lines += ["", "| entropy AUROC difference | mean over seeds | 95% CI seeds | 95% CI items | n seeds |",
                  "|---|---|---|---|---|", _row("V3 - V2", a2["v3_minus_v2"]), _row("V2 - V0", a2["v2_minus_v0"])]
        if a2["v4_minus_v3"] is not None:
            lines.append(_row("V4 oracle-trained head - V3 entropy (descriptive)", a2["v4_minus_v3"]))
        lines += ["", f"### A3 ({name}): smallest quality gap head - wait-k over the shared AL range", "",
                  "| V3 head | mean over seeds | 95% CI seeds | 95% CI items | n seeds |", "|---|---|---|---|---|"]
        lines += [_row(h, a3[h]) if a3[h]["value"] is not None else f"| {h} | n/a | {_ci(a3[h])} | | 0 |" for h in HEADS]
        lines += ["", f"### {name}: latency-quality points, mean (std) over seeds", "",
                  "| arm | policy | setting | seeds | quality | AL | LAAL | first write at (fraction of source) |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm, pts in mean_points(t["runs"]).items():
            for p in pts:
                cells = [f"{p[k]['mean']:{f}} ({p[k]['std']:{f}})" for k, f in
                         (("quality", ".3f"), ("al", ".2f"), ("laal", ".2f"), ("first_write_fraction", ".2f"))]
                lines.append(f"| {arm} | {p['policy']} | {p['setting']} | {p['seeds']} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines) + "\n"
