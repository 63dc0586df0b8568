"""The numbers that decide P1-P3, derived from the evaluate and latency metrics, and report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers.
"""
from __future__ import annotations

import statistics

from repro.papers.pruninginfersim.method import BY_DESIGN, FAMILIES, TAXONOMY

PAPER_ORDER = ["static_depth", "dynamic_depth", "static_width"]


def pareto_frontier(points: list[dict]) -> list[dict]:
    """Points no other point beats on both axes (lower quality loss, higher speedup), by loss."""
    front, best = [], float("-inf")
    for pt in sorted(points, key=lambda q: (q["quality_loss"], -q["speedup"])):
        if pt["speedup"] > best:
            front.append(pt)
            best = pt["speedup"]
    return front


def family_sequence(front: list[dict]) -> list[str]:
    """Families along the frontier by increasing loss, consecutive repeats collapsed."""
    seq: list[str] = []
    for pt in front:
        if not seq or seq[-1] != pt["family"]:
            seq.append(pt["family"])
    return seq


def band_winners(front: list[dict], bands: list[list[float]]) -> list[dict]:
    """Per loss band, the family of the fastest frontier point inside it (None if the band is empty)."""
    out = []
    for lo, hi in bands:
        inside = [pt for pt in front if lo <= pt["quality_loss"] <= hi]
        best = max(inside, key=lambda q: q["speedup"]) if inside else None
        out.append({"band": [lo, hi], "family": best["family"] if best else None,
                    "speedup": best["speedup"] if best else None})
    return out


def bound_efficiencies(latency: dict, setting: str, min_bound: float) -> dict:
    """Mean bound efficiency per family at one setting, over the sparsities whose bound >= min_bound
    (a variant that removes almost nothing is trivially 'at' its bound of ~1)."""
    out = {}
    for family, lat in latency["families"].items():
        rows = [e[setting] for e in lat["sparsities"].values() if e[setting]["bound"] >= min_bound]
        if rows:
            out[family] = statistics.mean(r["bound_efficiency"] for r in rows)
    return out


def taxonomy_check(latency: dict) -> dict:
    """P3: each family's executed GEMM dims against the paper's taxonomy; a family marked by design
    (2:4: K halves only on sparse kernels) falls back to its declared dims. `basis` says which
    matched per family (None: neither)."""
    measured = {fam: lat["measured_dims"] for fam, lat in latency["families"].items()}
    declared = {fam: lat["declared_dims"] for fam, lat in latency["families"].items()}
    basis = {}
    for fam in measured:
        if measured[fam] == TAXONOMY[fam]:
            basis[fam] = "executed"
        elif fam in BY_DESIGN and declared[fam] == TAXONOMY[fam]:
            basis[fam] = "declared"
        else:
            basis[fam] = None
    return {"expected": {f: TAXONOMY[f] for f in measured}, "measured": measured, "declared": declared,
            "basis": basis, "taxonomy_matches": all(basis.values())}


def decide(quality: dict, latency: dict, analysis: dict) -> dict:
    """All claim metrics: p1 (bound efficiency), p2 (frontier order), p3 (taxonomy)."""
    fr = analysis["frontier"]
    fkey = f"{fr['phase']}_b{fr['batch']}_l{fr['seq']}"
    b = analysis["bound"]
    bkey = f"{b['phase']}_b{b['batch']}_l{b['seq']}"
    points = [
        {"family": fam, "sparsity": float(s), "quality_loss": q["quality_loss"],
         "speedup": latency["families"][fam]["sparsities"][s][fkey]["speedup"]}
        for fam, ev in quality.items() for s, q in ev["sparsities"].items()
    ]
    front = pareto_frontier(points)
    sequence = family_sequence(front)
    eff = bound_efficiencies(latency, bkey, analysis["p1_min_bound"])
    best = max(eff, key=eff.get) if eff else None
    return {
        "points": points,
        "frontier": front,
        "p1": {"setting": bkey, "efficiency": eff, "best_family": best,
               "static_depth_efficiency": eff.get("static_depth")},
        "p2": {"setting": fkey, "frontier_sequence": sequence,
               "paper_order_holds": sequence == PAPER_ORDER,
               "bands": band_winners(front, analysis["loss_bands"])},
        "p3": taxonomy_check(latency),
    }


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def report_tables(m: dict, latency: dict) -> str:
    """Markdown sections of the report: frontier, bound efficiency, GEMM taxonomy, TTFT/TPOT."""
    lines = ["## Acceleration-quality frontier (prefill, " + m["p2"]["setting"] + ")", "",
             "| family | sparsity | quality loss | speedup | on frontier |", "|---|---|---|---|---|"]
    on_front = {(p["family"], p["sparsity"]) for p in m["frontier"]}
    for p in sorted(m["points"], key=lambda q: (q["family"], q["sparsity"])):
        lines.append(f"| {p['family']} | {p['sparsity']} | {_pct(p['quality_loss'])} | "
                     f"{p['speedup']:.2f}x | {'yes' if (p['family'], p['sparsity']) in on_front else ''} |")
    lines += ["", "Frontier families by increasing loss: " + " -> ".join(m["p2"]["frontier_sequence"]), "",
              "| paper's loss band | frontier family here | speedup |", "|---|---|---|"]
    for b in m["p2"]["bands"]:
        sp = "" if b["speedup"] is None else f"{b['speedup']:.2f}x"
        lines.append(f"| {_pct(b['band'][0])}-{_pct(b['band'][1])} | {b['family'] or 'no frontier point'} | {sp} |")
    lines += ["", f"## Bound efficiency (measured speedup / (1 / (1 - f)), {m['p1']['setting']})", "",
              "| family | mean bound efficiency |", "|---|---|"]
    for fam, e in sorted(m["p1"]["efficiency"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {fam} | {e:.3f} |")
    p3 = m["p3"]
    lines += ["", "## GEMM taxonomy (measured from the recorded GEMM shapes)", "",
              "| family | paper | measured |", "|---|---|---|"]
    for fam in FAMILIES:
        if fam in p3["measured"]:
            cell = ", ".join(p3["measured"][fam]) or "no change executed"
            if p3["basis"][fam] == "declared":
                cell += f"; {', '.join(p3['declared'][fam])} (by design, {BY_DESIGN[fam]})"
            lines.append(f"| {fam} | {', '.join(p3['expected'][fam])} | {cell} |")
    settings = list(latency["dense"].keys())
    lines += ["", "## TTFT / TPOT (median seconds; speedup over dense in brackets)", "",
              "| family | s | " + " | ".join(settings) + " |", "|---|---|" + "---|" * len(settings)]
    dense = latency["dense"]
    lines.append("| dense | 0 | " + " | ".join(f"{dense[k]['seconds'] * 1e3:.2f} ms" for k in settings) + " |")
    for fam in FAMILIES:
        for s, e in latency["families"].get(fam, {}).get("sparsities", {}).items():
            cells = " | ".join(f"{e[k]['seconds'] * 1e3:.2f} ms ({e[k]['speedup']:.2f}x)" for k in settings)
            lines.append(f"| {fam} | {s} | {cells} |")
    return "\n".join(lines) + "\n"
