"""Figures of the analysis stages and reports: matplotlib without a display, saved one way."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # jobs run headless; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save(fig, path) -> None:
    """Lay out, write a PNG, release the figure (jobs draw many)."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


COLOURS = {"reproduced": "tab:green", "not reproduced": "tab:red", "inconclusive": "tab:orange",
           "not checkable": "0.6"}


def forest_rows(by_paper: dict[str, list[dict]]) -> list[dict]:
    """One row per check: its effect placed on the check's own scale, threshold at 0 and the
    claim's side to the right (x = sign * (effect - threshold) / the row's largest distance). A claim
    whose regime was not reached keeps its rows, marked, so its effects stay visible."""
    rows = []
    for paper, claims in by_paper.items():
        for claim in claims:
            for c in claim["checks"]:
                e, t, op = c["effect"], c["threshold"], c["op"]
                regime_failed = claim.get("regime") == "not reached"
                row = {"paper": paper, "label": f"{claim['id']} {c['metric'].split('.', 1)[-1]}"
                       + (" [regime not reached]" if regime_failed else ""),
                       "verdict": c["verdict"], "text": "", "regime_failed": regime_failed}
                lo, hi = e["ci"]
                numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (e["value"], lo, hi, t))
                if numeric and op in (">", ">=", "<", "<="):
                    sign = 1 if op in (">", ">=") else -1
                    pts = [sign * (x - t) for x in (lo, e["value"], hi)]
                    scale = max(abs(x) for x in pts) or 1.0
                    row.update(x=[p / scale for p in sorted(pts)], text=f"{e['value']:.3g} [{lo:.3g}, {hi:.3g}] {op} {t:g}")
                else:  # exact outcomes and (in)equalities: a marker on the side the verdict gives
                    side = {"reproduced": 0.5, "not reproduced": -0.5}.get(c["verdict"], 0.0)
                    share = f" (holds in {100 * e['support']:.0f}% of replicates)" if "support" in e else ""
                    row.update(x=[side, side, side], text=f"{e['value']} {op} {t}{share}")
                rows.append(row)
    return rows


def forest(rows: list[dict], path, title: str) -> None:
    """Rows top to bottom; a bar for the interval, a dot for the estimate, coloured by verdict."""
    height = 0.8 + 0.32 * max(1, len(rows))
    fig, ax = plt.subplots(figsize=(9, height))
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        lo, mid, hi = r["x"]
        if lo == hi:  # an outcome without a numeric interval: a square in the verdict's colour
            ax.plot([mid], [y], "s", color=COLOURS[r["verdict"]], ms=9)
        else:
            ax.plot([lo, hi], [y, y], color=COLOURS[r["verdict"]], lw=3, solid_capstyle="butt")
        ax.plot([mid], [y], "o", color="k", ms=5 if r.get("regime_failed") else 4,
                mfc="white" if r.get("regime_failed") else "k")
        ax.text(1.08, y, r["text"], va="center", fontsize=7, transform=ax.get_yaxis_transform())
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(range(len(rows)), [f"{r['paper']}: {r['label']}" if len({x['paper'] for x in rows}) > 1
                                     else r["label"] for r in rows][::-1], fontsize=7)
    ax.set_xlim(-1.1, 1.1)
    ax.set_xlabel("effect relative to the threshold (each row on its own scale; right = the claim's side)")
    handles = [plt.Line2D([], [], color=c, lw=3) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4,
              frameon=False, borderaxespad=0.2, title=title, title_fontsize=8, alignment="left")
    fig.subplots_adjust(right=0.62)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
