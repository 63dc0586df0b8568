"""Mem2Evolve: co-evolution of Experience Memory and Asset Memory (spec: shared/specs/mem2evolve.md)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "v1.full_minus_asset": "effect",
    "v1.asset_minus_experience": "effect",
    "v1.experience_minus_static": "effect",
    "v2.full_slope": "effect",
    "v2.drawdown_full_minus_asset": "effect",
}
