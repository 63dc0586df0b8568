"""Mem2Evolve: co-evolution of Experience Memory and Asset Memory (spec: shared/specs/mem2evolve.md)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name | control):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "v1.full_minus_asset": "effect",
    "v1.asset_minus_experience": "effect",
    "v1.experience_minus_static": "effect",
    "v1_novel.full_minus_asset": "effect",
    "v1_novel.asset_minus_experience": "effect",
    "v1_novel.experience_minus_static": "effect",
    "v2.slope_full_minus_static": "effect",
    "v2.drawdown_full_minus_asset": "effect",
    "v2.tools_added_online": "effect",
    "regime.static_heldout": "effect",
    "regime.tool_use_asset": "effect",
    "regime.tool_use_full": "effect",
    "audit.clean": "bool",
    "controls.seed_aa": "control",
    "controls.seed_aa_slope": "control",
}
