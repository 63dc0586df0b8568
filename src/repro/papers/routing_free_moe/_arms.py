"""Which training runs a profile asks for: arms x seeds, plus the routing-free mu sweep.

Light (no torch): the workflow imports it to name its jobs, the stages to read an arm's settings.
"""
from __future__ import annotations

MAIN_ARMS = ("dense", "topk", "rf")


def sweep_name(mu: float) -> str:
    """Routing-free arm trained at another mu, named by mu in percent (paths and input names stay plain)."""
    return f"rf_mu{round(100 * mu)}"


def mu_arms(section: dict) -> dict[float, str]:
    """mu -> arm name, ascending; the main routing-free arm stands for its own mu."""
    main = section["arms"]["rf"]["mu"]
    return {mu: "rf" if mu == main else sweep_name(mu)
            for mu in sorted({main, *section["mu_sweep"]["values"]})}


def runs(section: dict) -> list[tuple[str, int]]:
    """(arm, seed) of every training job: main arms on `seeds`, other mus on `mu_sweep.seeds`."""
    out = [(arm, s) for arm in MAIN_ARMS for s in section["seeds"]]
    out += [(name, s) for name in mu_arms(section).values() if name != "rf"
            for s in section["mu_sweep"]["seeds"]]
    return out


def arm_spec(arms: dict, name: str) -> dict:
    if name.startswith("rf_mu"):
        return {**arms["rf"], "mu": int(name.removeprefix("rf_mu")) / 100}
    return arms[name]


def run_key(arm: str, seed: int | str) -> str:
    return f"{arm}_s{seed}"
