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
