"""Deciding a claim: every check compares one measured metric with a fixed value."""
from __future__ import annotations

import operator

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_CHECKABLE = "not checkable at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_CHECKABLE)

OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
       ">": operator.gt, "<": operator.lt}


def lookup(metrics: dict, path: str):
    """`a.b.c` in nested dicts; None when any part is missing."""
    node = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fmt_number(x, spec: str) -> str:
    """A report-table cell: `x` formatted, or n/a where a measurement is missing."""
    return "n/a" if x is None else format(x, spec)


def evaluate_claim(claim: dict, metrics: dict) -> dict:
    measured, failed, missing = {}, [], []
    for chk in claim["checks"]:
        value = lookup(metrics, chk["metric"])
        measured[chk["metric"]] = value
        if value is None:
            missing.append(chk["metric"])
            continue
        try:
            ok = OPS[chk["op"]](value, chk["value"])
        except TypeError:
            ok = False
        if not ok:
            failed.append(f"{chk['metric']} = {_fmt(value)}, needs {chk['op']} {_fmt(chk['value'])}")
    if missing:
        verdict, reason = NOT_CHECKABLE, "not measured at this scale: " + ", ".join(missing)
    elif failed:
        verdict, reason = NOT_REPRODUCED, "; ".join(failed)
    else:
        verdict = REPRODUCED
        reason = "; ".join(f"{c['metric']} = {_fmt(measured[c['metric']])} {c['op']} {_fmt(c['value'])}"
                           for c in claim["checks"])
    return {"id": claim["id"], "statement": claim["statement"], "published": claim["published"],
            "measured": measured, "verdict": verdict, "reason": reason}


def evaluate_claims(claims: list[dict], metrics: dict) -> list[dict]:
    return [evaluate_claim(c, metrics) for c in claims]
