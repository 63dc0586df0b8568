"""Deciding a claim from intervals: every check compares one effect with a fixed threshold.

A check in params is `{metric, op, value, says}`: `metric` is a dotted path into the analysis
metrics naming an effect record (repro.report.intervals) or an exact outcome (a bool or a name,
e.g. a measured GEMM taxonomy), `says` the spec's wording. Against an interval [lo, hi]:
- reproduced: the whole interval satisfies `op value`;
- not reproduced: the whole interval violates it;
- inconclusive: it straddles the threshold (with how much narrower it would have to be), there is no
  interval (one sample), the timing job's A/A control says the timing was unstable, or the effect is
  marked `unmet`: a precondition the spec sets for judging it (a model's quality window, say) failed;
- not checkable: the params say, in advance and with a reason (`not_checkable:`), that this scale
  cannot decide the check. An effect the analysis failed to measure in this run is inconclusive.
A claim is not reproduced when any check is, else inconclusive when any is, else not checkable when
any is, else reproduced.
"""
from __future__ import annotations

import operator

from repro.report.intervals import is_effect, unmeasured

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_CHECKABLE = "not checkable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_CHECKABLE)

OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
       ">": operator.gt, "<": operator.lt}
_MISSING = object()


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
    if e["unit"] in ("exact", "by design"):
        return f"{fmt(e['value'])} ({e['unit']}{', measured from the run' if e['unit'] == 'by design' else ''})"
    lo, hi = e["ci"]
    ci = "no interval" if lo is None else f"95% CI [{fmt(lo)}, {fmt(hi)}]"
    return f"{fmt(e['value'])} ({ci}, n = {e['n']} {e['unit']})"


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
        k = narrower_by(e, t)
        row["narrower_by"] = k
        reason += ("; the estimate sits on the threshold" if k is None else
                   f"; the interval would have to be {k:.1f}x narrower (about {k * k:.0f}x the {e['unit']})")
    return {**row, "verdict": verdict, "reason": reason}


def combine(verdicts: list[str]) -> str:
    for v in (NOT_REPRODUCED, INCONCLUSIVE, NOT_CHECKABLE):
        if v in verdicts:
            return v
    return REPRODUCED


def evaluate_claim(claim: dict, metrics: dict) -> dict:
    checks = [decide_check(c, metrics) for c in claim["checks"]]
    return {"id": claim["id"], "statement": claim["statement"], "published": claim["published"],
            "deviation": claim.get("deviation"), "checks": checks,
            "verdict": combine([c["verdict"] for c in checks])}


def evaluate_claims(claims: list[dict], metrics: dict) -> list[dict]:
    return [evaluate_claim(c, metrics) for c in claims]


def check_declared(metrics: dict, declared: dict[str, str]) -> None:
    """The analysis wrote every metric its paper declares (ANALYSIS_METRICS), each of its kind."""
    for path, kind in declared.items():
        raw = lookup(metrics, path)
        ok = {"effect": is_effect(raw), "bool": isinstance(raw, bool),
              "name": isinstance(raw, str)}[kind]
        if not ok:
            raise ClaimError(f"the analysis declares {path!r} as {kind} but wrote {raw!r}")
