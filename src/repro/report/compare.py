"""Set two report trees' verdicts side by side: a replication on disjoint seeds, or an older snapshot.

    python -m repro.report.compare reports/mini reports/mini-seeds1000 [--out agreement.md]
    python -m repro.report.compare --replicate mini      # reports/mini against its replication

Per claim: both verdicts, both effects of every check, and whether the verdicts agree; then the effects
whose two estimates lie further apart than their intervals allow (a replication's check on the
intervals themselves: about 5% of the effects when they are calibrated); the last line is
`verdict agreement: K of N claims`. Only claims present in both trees are counted (a paper or claim
in one tree only is listed as such). The markdown goes to stdout and, with --out, to a file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from scipy import stats

from repro.core.config import REPO_ROOT, load_yaml, run_name
from repro.core.io import atomic_write_text, read_json
from repro.report.verdicts import UNSAMPLED, fmt_effect


def load_tree(root: Path) -> dict[str, dict[str, dict]]:
    """paper -> claim id -> claim verdict record, from every <paper>/verdicts.json under `root`."""
    if not root.is_dir():
        raise SystemExit(f"{root}: no such report tree (run the workflow, or `make restore`, first)")
    found = sorted(root.glob("*/verdicts.json"))
    if not found:
        raise SystemExit(f"{root}: holds no <paper>/verdicts.json")
    return {(v := read_json(p))["paper"]: {c["id"]: c for c in v["claims"]} for p in found}


def _effects(claim: dict) -> str:
    return "; ".join(fmt_effect(c["effect"]) for c in claim["checks"])


def apart(ea: dict, eb: dict) -> float | None:
    """Two-sided p-value that two independent runs' estimates measure one effect: their difference over
    the combined standard error, each read back from the 95% interval the report shows (half-width over
    t_{0.975, df}, or the normal's 1.96 without df: an interval widened by its A/A counts widened),
    against Student-t with Welch-Satterthwaite df where both carry df, else the normal. None where
    either effect has no sampling interval (by design, exact, a single sample)."""
    if ea["unit"] in UNSAMPLED or eb["unit"] in UNSAMPLED or None in (*ea["ci"], *eb["ci"]):
        return None
    se = [(e["ci"][1] - e["ci"][0]) / 2 / (stats.t.ppf(0.975, e["df"]) if e.get("df") else stats.norm.ppf(0.975))
          for e in (ea, eb)]
    if not all(s > 0 for s in se):
        return None
    z = abs(ea["value"] - eb["value"]) / (se[0] ** 2 + se[1] ** 2) ** 0.5
    if ea.get("df") and eb.get("df"):
        df = (se[0] ** 2 + se[1] ** 2) ** 2 / (se[0] ** 4 / ea["df"] + se[1] ** 4 / eb["df"])
        return float(2 * stats.t.sf(z, df))
    return float(2 * stats.norm.sf(z))


def compare(a: Path, b: Path) -> tuple[list[str], int, int]:
    """Markdown lines, the number of claims whose verdicts agree, and the number compared."""
    ta, tb = load_tree(a), load_tree(b)
    lines = [f"# Verdicts: `{a}` (A) against `{b}` (B)", "",
             "| paper | claim | verdict A | verdict B | agree | effects A | effects B |", "|---|---|---|---|---|---|---|"]
    agree = total = 0
    differ, tested, far = [], 0, []
    for paper in sorted(set(ta) | set(tb)):
        ids = sorted(set(ta.get(paper, {})) | set(tb.get(paper, {})))
        for cid in ids:
            ca, cb = ta.get(paper, {}).get(cid), tb.get(paper, {}).get(cid)
            if ca is None or cb is None:
                lines.append(f"| {paper} | {cid} | {ca['verdict'] if ca else 'absent'} | "
                             f"{cb['verdict'] if cb else 'absent'} | not compared | | |")
                continue
            total += 1
            same = ca["verdict"] == cb["verdict"]
            agree += same
            if not same:
                differ.append(f"{paper} {cid}: {ca['verdict']} (A) vs {cb['verdict']} (B)")
            lines.append(f"| {paper} | {cid} | {ca['verdict']} | {cb['verdict']} | {'yes' if same else '**no**'} | "
                         f"{_effects(ca)} | {_effects(cb)} |")
            for ka, kb in zip(ca["checks"], cb["checks"]):
                p = apart(ka["effect"], kb["effect"]) if ka.get("metric") == kb.get("metric") else None
                tested += p is not None
                if p is not None and p < 0.05:
                    far.append(f"{paper} {cid} {ka.get('metric', '')} (p = {p:.2g})")
    lines += ["", "Claims whose verdict differs: " + ("; ".join(differ) if differ else "none") + ".", "",
              f"Effects whose two estimates lie further apart than their intervals allow (two-sided p < 0.05; "
              f"about 5% expected where the intervals are calibrated and the runs independent): {len(far)} of "
              f"{tested}" + (": " + "; ".join(far) if far else "") + ".", ""]
    return lines, agree, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="*", type=Path, help="two report trees, A and B")
    parser.add_argument("--replicate", metavar="PROFILE",
                        help="compare reports/PROFILE with its replication (params/config.yaml replicate_offset)")
    parser.add_argument("--out", type=Path, help="also write the markdown here (--replicate: default "
                        "reports/<profile>-seeds<offset>/agreement.md)")
    args = parser.parse_args(argv)
    if args.replicate:
        offset = load_yaml(REPO_ROOT / "params" / "config.yaml")["replicate_offset"]
        a, b = Path("reports") / args.replicate, Path("reports") / run_name(args.replicate, offset)
        args.out = args.out or b / "agreement.md"
    elif len(args.trees) == 2:
        a, b = args.trees
    else:
        parser.error("give two report trees, or --replicate PROFILE")
    lines, agree, total = compare(a, b)
    lines.append(f"verdict agreement: {agree} of {total} claims")
    text = "\n".join(lines)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
