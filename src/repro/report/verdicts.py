"""Deciding a claim from intervals: regime first, then its controls, then its checks.

A check in params is `{metric, op, value, says}`: `metric` is a dotted path into the analysis
metrics naming an effect record (repro.report.intervals) or an exact outcome (a bool or a name,
e.g. a measured GEMM taxonomy), `says` the spec's wording. Against an interval [lo, hi]:
- reproduced: the whole interval satisfies `op value`;
- not reproduced: the whole interval violates it, and still does at Holm's adjusted level when the
  claim has several sampled checks (k chances to violate must not multiply the false rate);
- inconclusive: it straddles the threshold (with how much narrower it would have to be), there is no
  interval (one sample), the timing job's A/A control has no interval, the effect is marked `unmet`
  (a precondition the spec sets for judging that effect failed), or the violation does not survive
  Holm's adjustment;
- not checkable: the params say, in advance and with a reason (`not_checkable:`), that this scale
  cannot decide the check. An effect the analysis failed to measure in this run is inconclusive.
A claim is decided in three steps. Its `regime:` checks (the same shape) state when its checks mean
something (a baseline above chance, a mechanism that acts); each must be reproduced, that is, wholly
on its satisfied side, or the claim is inconclusive, "regime not reached", with the effects still
shown. A claim without a meaningful precondition says why in `regime_none:`. Its `controls:` name
controls in the analysis metrics (`controls.<name>`: a seed-only A/A, say); a failed one makes the
claim inconclusive. Otherwise the claim is not reproduced when any check is, else inconclusive when
any is, else not checkable when any is, else reproduced.
"""
from __future__ import annotations

import math
import operator

from repro.report.intervals import at_level, is_effect, unmeasured

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_CHECKABLE = "not checkable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_CHECKABLE)
REGIME_MET, REGIME_FAILED, REGIME_NONE = "met", "not reached", "none"

OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
       ">": operator.gt, "<": operator.lt}
UNSAMPLED = ("exact", "by design")


class ClaimError(ValueError):
    """A check that cannot be read (a metric path the analysis does not write, a bare number)."""


def lookup(metrics: dict, path: str):
    """`a.b.c` in nested dicts; raises ClaimError naming the first missing part."""
    node = metrics
    for i, part in enumerate(path.split(".")):
        if not isinstance(node, dict) or part not in node:
            raise ClaimError(f"check metric {path!r}: the analysis metrics have no "
                             f"{'.'.join(path.split('.')[:i + 1])!r}")
        node = node[part]
    return node


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "n/a" if v is None else str(v)


def fmt_number(x, spec: str) -> str:
    """A report-table cell: `x` formatted, or n/a where a measurement is missing."""
    return "n/a" if x is None else format(x, spec)


def fmt_ci(e: dict, spec: str = ".3f") -> str:
    """A report-table cell: value [lo, hi] of an effect, or n/a with the reason it was not measured."""
    if e["value"] is None:
        return f"n/a ({e.get('reason', 'not measured')})"
    lo, hi = e["ci"]
    return f"{e['value']:{spec}} [{fmt_number(lo, spec)}, {fmt_number(hi, spec)}]"


def seeds_items_table(rows: list[tuple[str, dict]], items: str) -> list[str]:
    """Markdown rows of hierarchical effects (intervals.hierarchical): the seeds x items interval, the
    items-only interval (seeds held fixed), and the counts; `items` names them (questions, ...)."""
    lines = [f"| effect | value [95% CI, seeds x {items}] | 95% CI, {items} only | seeds | items |",
             "|---|---|---|---|---|"]
    for label, e in rows:
        lo, hi = e.get("ci_items", [None, None])
        lines.append(f"| {label} | {fmt_ci(e)} | [{fmt_number(lo, '.3f')}, {fmt_number(hi, '.3f')}] | "
                     f"{e['n']} | {e.get('n_items', 'n/a')} |")
    return lines


def fmt_effect(e: dict) -> str:
    if e["unit"] in UNSAMPLED:
        return f"{fmt(e['value'])} ({e['unit']}{', measured from the run' if e['unit'] == 'by design' else ''})"
    lo, hi = e["ci"]
    ci = "no interval" if lo is None else f"95% CI [{fmt(lo)}, {fmt(hi)}]"
    aa = f", widened x{e['aa_factor']:.3f} by its A/A control" if e.get("aa_factor") else ""
    return f"{fmt(e['value'])} ({ci}{aa}, n = {e['n']} {e['unit']})"


def interval_verdict(lo: float, hi: float, op: str, t: float) -> str:
    """Whole interval satisfies -> reproduced; whole interval violates -> not reproduced."""
    sat, vio = {">": (lo > t, hi <= t), ">=": (lo >= t, hi < t), "<": (hi < t, lo >= t),
                "<=": (hi <= t, lo > t), "==": (lo == hi == t, t < lo or t > hi),
                "!=": (t < lo or t > hi, lo == hi == t)}[op]
    return REPRODUCED if sat else NOT_REPRODUCED if vio else INCONCLUSIVE


def narrower_by(e: dict, t: float) -> float | None:
    """How many times narrower an interval of the same centre must be to decide the check: its
    half-width over the distance from the estimate to the threshold (None: the estimate is on it)."""
    lo, hi = e["ci"]
    gap = abs(e["value"] - t)
    return None if gap == 0 else (hi - lo) / 2 / gap


def seeds_needed(e: dict, t: float, most: int = 1000) -> int | None:
    """For a Student-t interval over seeds: the number of seeds whose interval, at the same spread,
    would clear the threshold (the t quantile shrinks with the seeds too); None past `most`."""
    import numpy as np
    from scipy.stats import t as student

    n = np.arange(e["n"] + 1, most + 1)
    clears = student.ppf(0.975, n - 1) * e["se"] * math.sqrt(e["n"]) / np.sqrt(n) < abs(e["value"] - t)
    return int(n[clears.argmax()]) if clears.any() else None


def _more(e: dict, t: float, k: float) -> str:
    if e.get("method") == "Student-t" and e["unit"] == "seeds":
        n = seeds_needed(e, t)
        return f"about {n} seeds at this spread" if n else "more than 1000 seeds at this spread"
    return f"about {k * k:.0f}x the {e['unit']}"


def decide_check(check: dict, metrics: dict) -> dict:
    op, t = check["op"], check["value"]
    row = {"metric": check["metric"], "op": op, "threshold": t,
           "says": check.get("says") or f"{check['metric']} {op} {fmt(t)}"}
    if check.get("not_checkable"):  # decided in advance: the effect is shown when the analysis wrote one
        try:
            e = lookup(metrics, check["metric"])
        except ClaimError:
            e = None
        return {**row, "effect": e if is_effect(e) else unmeasured(check["not_checkable"]),
                "verdict": NOT_CHECKABLE, "reason": f"not checkable at this scale: {check['not_checkable']}"}
    raw = lookup(metrics, check["metric"])
    if is_effect(raw):
        e = raw
    elif isinstance(raw, (bool, str)):  # an exact outcome (a measured shape, a name): no sampling
        e = {"value": raw, "ci": [raw, raw], "n": 1, "unit": "exact"}
    else:
        raise ClaimError(f"check metric {check['metric']!r} is {raw!r}: the analysis must write an effect "
                         "{value, ci, n, unit} (or an exact bool/name)")
    row["effect"] = e
    lo, hi = e["ci"]
    if isinstance(t, (bool, str)) != (e["unit"] == "exact") or (e["unit"] == "exact" and type(t) is not type(raw)):
        raise ClaimError(f"check on {check['metric']!r}: threshold {t!r} ({type(t).__name__}) cannot be compared "
                         f"with {'the exact outcome' if e['unit'] == 'exact' else 'an effect'} {fmt(e['value'])}")
    if e["value"] is None:
        return {**row, "verdict": INCONCLUSIVE,
                "reason": f"not measured in this run: {e.get('reason') or 'no value'}"}
    if lo is None:
        return {**row, "verdict": INCONCLUSIVE, "reason": f"{fmt_effect(e)}: one sample, no interval"}
    if e["unit"] == "exact":
        ok = OPS[op](e["value"], t)
        return {**row, "verdict": REPRODUCED if ok else NOT_REPRODUCED,
                "reason": f"{fmt(e['value'])} ({e['unit']}){'' if ok else ', needs ' + op + ' ' + fmt(t)}"}
    verdict = interval_verdict(lo, hi, op, t)
    reason = {REPRODUCED: f"the whole interval satisfies {op} {fmt(t)}",
              NOT_REPRODUCED: f"the whole interval violates {op} {fmt(t)}",
              INCONCLUSIVE: f"the interval straddles {fmt(t)}"}[verdict]
    if e.get("unit") == "by design":
        reason += f"; by design: {e.get('note', 'fixed by configuration')}"
    if e.get("unstable"):
        return {**row, "verdict": INCONCLUSIVE, "reason": f"timing unstable: {e['unstable']} (the effect alone: {reason})"}
    if e.get("unmet"):
        return {**row, "verdict": INCONCLUSIVE,
                "reason": f"precondition not met: {e['unmet']} (the effect alone: {reason})"}
    if verdict == INCONCLUSIVE:
        raw_ci = e.get("ci_unwidened")
        if raw_ci and interval_verdict(*raw_ci, op, t) != INCONCLUSIVE:
            reason += (f"; timing noise of the size its A/A control shows (x{e['aa_factor']:.3f}) could move it "
                       f"across (unwidened [{fmt(raw_ci[0])}, {fmt(raw_ci[1])}])")
        else:
            k = narrower_by(e, t)
            row["narrower_by"] = k
            reason += ("; the estimate sits on the threshold" if k is None else
                       f"; the interval would have to be {k:.1f}x narrower ({_more(e, t, k)})")
    return {**row, "verdict": verdict, "reason": reason}


def holm(rows: list[dict]) -> list[dict]:
    """Holm's step-down over a claim's sampled checks: a check stays "not reproduced" only if, taken
    in order of the strength of its violation, its interval at level 1 - 0.05/(k - i) still lies wholly
    on the violating side (i = the checks already confirmed). The first that fails, and every later
    one, become inconclusive with the reason."""
    sampled = [r for r in rows if r["verdict"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
               and r.get("effect", {}).get("unit") not in UNSAMPLED and r["effect"].get("ci", [None])[0] is not None]
    k = len(sampled)
    if k < 2:
        return rows

    def strength(r: dict) -> int:  # the largest m <= k at which the violation holds
        best = 0
        for m in range(1, k + 1):
            ci = at_level(r["effect"], m)
            if ci is None or interval_verdict(*ci, r["op"], r["threshold"]) != NOT_REPRODUCED:
                break
            best = m
        return best

    violated = sorted((r for r in sampled if r["verdict"] == NOT_REPRODUCED), key=strength, reverse=True)
    confirmed = 0
    for r in violated:
        needed = k - confirmed
        if strength(r) >= needed:
            confirmed += 1
            r["reason"] += f" (holds at Holm's level 1 - 0.05/{needed} over the claim's {k} checks)"
            continue
        r["verdict"] = INCONCLUSIVE
        r["reason"] += (f", but not at Holm's level 1 - 0.05/{needed} over the claim's {k} checks"
                        + ("" if at_level(r["effect"], needed) is not None else " (no adjusted interval)"))
    return rows


def combine(verdicts: list[str]) -> str:
    for v in (NOT_REPRODUCED, INCONCLUSIVE, NOT_CHECKABLE):
        if v in verdicts:
            return v
    return REPRODUCED


def decide_regime(claim: dict, metrics: dict) -> tuple[str, list[dict]]:
    """`met` when every regime check is wholly on its satisfied side, `not reached` otherwise; `none`
    with the params' reason when the claim declares no precondition."""
    if "regime" not in claim:
        return REGIME_NONE, []
    rows = [decide_check(c, metrics) for c in claim["regime"]]
    return (REGIME_MET if all(r["verdict"] == REPRODUCED for r in rows) else REGIME_FAILED), rows


def failed_controls(claim: dict, metrics: dict) -> list[str]:
    out = []
    for name in claim.get("controls", []):
        ctrl = lookup(metrics, f"controls.{name}")
        if not ctrl["passed"]:
            out.append(f"{name} ({ctrl['kind']}: {fmt_effect(ctrl['effect'])}, {ctrl['rule']})")
    return out


def evaluate_claim(claim: dict, metrics: dict) -> dict:
    checks = holm([decide_check(c, metrics) for c in claim["checks"]])
    verdict = combine([c["verdict"] for c in checks])
    regime, regime_rows = decide_regime(claim, metrics)
    reasons = []
    if regime == REGIME_FAILED:
        reasons.append("regime not reached: " + "; ".join(f"{r['says']} ({r['reason']})" for r in regime_rows
                                                          if r["verdict"] != REPRODUCED))
    failed = failed_controls(claim, metrics)
    if failed:
        reasons.append("control failed: " + "; ".join(failed))
    sampled = [c for c in checks if c["verdict"] != NOT_CHECKABLE]
    basis = "by design" if sampled and all(c["effect"].get("unit") in UNSAMPLED for c in sampled) else None
    return {"id": claim["id"], "statement": claim["statement"], "published": claim["published"],
            "deviation": claim.get("deviation"), "checks": checks, "regime": regime, "regime_checks": regime_rows,
            "regime_none": claim.get("regime_none"), "controls": claim.get("controls", []),
            "verdict": INCONCLUSIVE if reasons else verdict, "checks_verdict": verdict,
            "reason": "; ".join(reasons) or None, "basis": basis}


def evaluate_claims(claims: list[dict], metrics: dict) -> list[dict]:
    return [evaluate_claim(c, metrics) for c in claims]


CONTROL_KINDS = ("timing A/A", "seed A/A")


def timing_control(aa: dict, what: str) -> dict:
    """A timing job's A/A control for the Controls section: the baseline against an identical copy,
    passed when its ratio's interval stays within the stable band."""
    from repro.core.timing import AA_BOUNDS

    lo, hi = aa["ci"]
    return {"kind": "timing A/A", "effect": aa, "what": what,
            "passed": lo is not None and AA_BOUNDS[0] <= lo and hi <= AA_BOUNDS[1],
            "rule": f"passes when the ratio's interval lies within [{AA_BOUNDS[0]}, {AA_BOUNDS[1]}]"}


def seed_control(effect: dict, what: str, null: float = 0.0) -> dict:
    """A seed-only A/A control: the baseline arm on disjoint seeds compared with itself through the
    claims' own effect code. It passes when no effect is decided: the interval holds `null`."""
    lo, hi = effect["ci"]
    return {"kind": "seed A/A", "effect": effect, "what": what,
            "passed": lo is not None and lo <= null <= hi,
            "rule": f"passes when the interval holds {fmt(null)} (no effect decided)"}


def check_declared(metrics: dict, declared: dict[str, str]) -> None:
    """The analysis wrote every metric its paper declares (ANALYSIS_METRICS), each of its kind."""
    for path, kind in declared.items():
        raw = lookup(metrics, path)
        ok = {"effect": is_effect(raw), "bool": isinstance(raw, bool), "name": isinstance(raw, str),
              "control": isinstance(raw, dict) and raw.get("kind") in CONTROL_KINDS and is_effect(raw.get("effect"))
              and isinstance(raw.get("passed"), bool)}[kind]
        if not ok:
            raise ClaimError(f"the analysis declares {path!r} as {kind} but wrote {raw!r}")
