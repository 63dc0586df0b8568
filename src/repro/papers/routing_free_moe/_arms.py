"""Which training runs a profile asks for: arms x seeds, the routing-free mu sweep, and the top-k
arm again on disjoint seeds (the seed-only A/A control).

Light (no torch): the workflow imports it to name its jobs, the stages to read an arm's settings.
"""
from __future__ import annotations

MAIN_ARMS = ("dense", "topk", "rf")
AA_ARM = "topk_aa"  # the top-k arm (R1's baseline) trained again on `aa_seeds`


def main_arms(section: dict) -> list[str]:
    """The main arms this profile trains (dense, which no claim reads, only where it is configured)."""
    return [a for a in MAIN_ARMS if a in section["arms"]]


def sweep_name(mu: float) -> str:
    """Routing-free arm trained at another mu, named by mu in percent (paths and input names stay plain)."""
    return f"rf_mu{round(100 * mu)}"


def mu_arms(section: dict) -> dict[float, str]:
    """mu -> arm name, ascending; the main routing-free arm stands for its own mu."""
    main = section["arms"]["rf"]["mu"]
    return {mu: "rf" if mu == main else sweep_name(mu)
            for mu in sorted({main, *section["mu_sweep"]["values"]})}


def runs(section: dict) -> list[tuple[str, int]]:
    """(arm, seed) of every training job: main arms on `seeds`, other mus on `mu_sweep.seeds`, the
    top-k A/A on `aa_seeds`."""
    out = [(arm, s) for arm in main_arms(section) for s in section["seeds"]]
    out += [(name, s) for name in mu_arms(section).values() if name != "rf"
            for s in section["mu_sweep"]["seeds"]]
    shared = set(section["aa_seeds"]) & set(section["seeds"])
    if shared:
        raise ValueError(f"aa_seeds must be disjoint from seeds (the A/A trains the arm again on other seeds): "
                         f"{sorted(shared)} in both")
    return out + [(AA_ARM, s) for s in section["aa_seeds"]]


def arm_spec(arms: dict, name: str) -> dict:
    if name.startswith("rf_mu"):
        return {**arms["rf"], "mu": int(name.removeprefix("rf_mu")) / 100}
    if name == AA_ARM:
        return arms["topk"]
    return arms[name]


def run_key(arm: str, seed: int | str) -> str:
    return f"{arm}_s{seed}"
