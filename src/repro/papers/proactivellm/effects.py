"""The numbers that decide A1-A3 from the evaluate metrics of each task, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed curves. Quality
is in [0, 1] (BLEU / 100 or accuracy); latency is AL in source units unless named LAAL.
"""
from __future__ import annotations

import numpy as np

HEADS = ("entropy", "maxprob", "attention")
PROPOSED, MSM, FULL, WAITK_ARM, ORACLE_ARM = "v3", "v2", "v0", "v1", "v4"


def curve(points: list[dict], policy: str) -> list[dict]:
    return sorted((p for p in points if p["policy"] == policy), key=lambda p: p["al"])


def al_at_quality(points: list[dict], target: float, fallback: float, key: str = "al") -> float:
    """Lowest latency among points reaching `target` quality; `fallback` (read everything) if none."""
    ok = [p[key] for p in points if p["quality"] >= target]
    return min(ok) if ok else fallback


def gap_to_curve(points: list[dict], baseline: list[dict]) -> dict:
    """Quality of `points` minus the baseline curve's (linear in AL) at the same AL, over the points
    inside the baseline's AL range; None when no point falls inside."""
    xs = [p["al"] for p in baseline]
    ys = [p["quality"] for p in baseline]
    inside = [p for p in points if xs[0] <= p["al"] <= xs[-1]]
    gaps = [p["quality"] - float(np.interp(p["al"], xs, ys)) for p in inside]
    return {"mean_gap": float(np.mean(gaps)) if gaps else None, "min_gap": min(gaps) if gaps else None,
            "points_inside": len(gaps), "points": len(points)}


def decide_task(arms: dict, keep: float) -> dict:
    """A1-A3 numbers for one task (arms: evaluate's per-arm results)."""
    v0_full = curve(arms[FULL]["points"], "read_all")[0]
    waitk = curve(arms[WAITK_ARM]["points"], "waitk")
    target = keep * v0_full["quality"]
    fallback = {"al": v0_full["al"], "laal": v0_full["laal"]}
    best = {}
    for key in ("al", "laal"):
        at = {h: al_at_quality(curve(arms[PROPOSED]["points"], h), target, fallback[key], key) for h in HEADS}
        at["waitk"] = al_at_quality(waitk, target, fallback[key], key)
        best[key] = at
    proposed = min(best["al"]["entropy"], best["al"]["attention"])
    oracle = curve(arms[PROPOSED]["points"], "oracle")[0]
    a1 = {"read_then_generate": {k: v0_full[k] for k in ("quality", "al", "laal")}, "target_quality": target,
          "al_at_target": best["al"], "laal_at_target": best["laal"],
          "al_gain": best["al"]["waitk"] - proposed,
          "laal_gain": best["laal"]["waitk"] - min(best["laal"]["entropy"], best["laal"]["attention"]),
          "oracle_policy": {k: oracle[k] for k in ("quality", "al", "laal")},
          "excess_al_over_oracle": proposed - oracle["al"]}
    auroc = {arm: r["auroc"] for arm, r in arms.items()}
    ent = {arm: a.get("entropy") for arm, a in auroc.items()}
    diff = lambda a, b: None if ent.get(a) is None or ent.get(b) is None else ent[a] - ent[b]  # noqa: E731
    a2 = {"auroc": auroc, "entropy": ent, "v3_minus_v2": diff(PROPOSED, MSM), "v2_minus_v0": diff(MSM, FULL),
          "v4_minus_v3": None if ORACLE_ARM not in auroc or PROPOSED not in auroc
          else (auroc[ORACLE_ARM].get("learned") or 0) - ent[PROPOSED]}
    gaps = {h: gap_to_curve(curve(arms[PROPOSED]["points"], h), waitk) for h in HEADS}
    means = [g["mean_gap"] for g in gaps.values()]
    a3 = {"heads": gaps, "worst_head_gap": None if None in means else min(means)}
    return {"a1": a1, "a2": a2, "a3": a3}


def decide(tasks: dict, keep: float) -> dict:
    """Per task, then flattened as a1.<task>.*, a2.<task>.*, a3.<task>.* for the claim checks."""
    per = {name: decide_task(r["arms"], keep) for name, r in tasks.items()}
    return {claim: {name: per[name][claim] for name in per} for claim in ("a1", "a2", "a3")}


def _f(x, fmt=".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def report_tables(m: dict, tasks: dict) -> str:
    lines = []
    for name, res in tasks.items():
        scale = "BLEU" if res["metric"] == "bleu" else "accuracy"
        a1, a2, a3 = m["a1"][name], m["a2"][name], m["a3"][name]
        lines += [f"## {name}: latency-quality points (quality = {scale} in [0, 1]; AL, LAAL in source words)", "",
                  "| arm | policy | setting | quality | AL | LAAL | first write at (fraction of source) |",
                  "|---|---|---|---|---|---|---|"]
        for arm, r in res["arms"].items():
            for p in r["points"]:
                setting = f"k={p['k']}" if "k" in p else (f"q={p['quantile']:.2f} (tau {p['tau']:.3g})"
                                                          if "tau" in p else "")
                lines.append(f"| {arm} | {p['policy']} | {setting} | {p['quality']:.3f} | {p['al']:.2f} | "
                             f"{p['laal']:.2f} | {p['first_write_fraction']:.2f} |")
        lines += ["", f"A1 ({name}): target quality {a1['target_quality']:.3f} (keep x read-then-generate "
                  f"{a1['read_then_generate']['quality']:.3f} at AL {a1['read_then_generate']['al']:.2f}). "
                  "Lowest AL reaching it (read-then-generate AL when a curve never does):", "",
                  "| curve | AL at target | LAAL at target |", "|---|---|---|"]
        for key in (*HEADS, "waitk"):
            label = f"V3 {key} head" if key in HEADS else "V1 wait-k (best k)"
            lines.append(f"| {label} | {a1['al_at_target'][key]:.2f} | {a1['laal_at_target'][key]:.2f} |")
        lines += ["", f"AL gain of V3 (best of entropy / attention) over the best wait-k: {a1['al_gain']:+.2f} "
                  f"(LAAL {a1['laal_gain']:+.2f}); oracle policy on V3: quality {a1['oracle_policy']['quality']:.3f} "
                  f"at AL {a1['oracle_policy']['al']:.2f}, so V3's excess AL over the oracle is "
                  f"{a1['excess_al_over_oracle']:+.2f}.", "",
                  f"### {name}: AUROC of each head's score for oracle sufficiency (teacher-forced states)", "",
                  "| arm | entropy | max-prob | attention | oracle-trained head |", "|---|---|---|---|---|"]
        for arm, au in a2["auroc"].items():
            lines.append(f"| {arm} | {_f(au.get('entropy'))} | {_f(au.get('maxprob'))} | "
                         f"{_f(au.get('attention'))} | {_f(au.get('learned'))} |")
        lines += ["", f"Entropy AUROC: V3 - V2 = {_f(a2['v3_minus_v2'], '+.3f')}, V2 - V0 = "
                  f"{_f(a2['v2_minus_v0'], '+.3f')}; V4's oracle-trained head minus V3 entropy = "
                  f"{_f(a2['v4_minus_v3'], '+.3f')}.", "",
                  f"### {name}: V3 heads against the V1 wait-k curve (quality gap at equal AL)", "",
                  "| head | mean gap | min gap | points inside the wait-k AL range |", "|---|---|---|---|"]
        for h, g in a3["heads"].items():
            lines.append(f"| {h} | {_f(g['mean_gap'], '+.3f')} | {_f(g['min_gap'], '+.3f')} | "
                         f"{g['points_inside']} of {g['points']} |")
        lines.append("")
    return "\n".join(lines) + "\n"
