"""Memory-R2: RL for long-horizon memory-augmented agents, LoGo-GRPO (spec: shared/specs/memory_r2.md)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "r1.logo_vs_grpo": "effect",
    "r1.logo_vs_compute_matched": "effect",
    "r1.credit_local_minus_global": "effect",
    "r2.f1": "effect",
    "r2.memory_failure": "effect",
    "r3.shared_minus_separate": "effect",
    "regime.r1_update": "effect",
    "regime.r1_delete": "effect",
    "regime.r2_direct_collapse": "effect",
    "regime.r3_above_empty": "effect",
    "controls.seed_aa": "control",
}
