"""UTPTrack: unified token pruning (search region, dynamic and static template) for one-stream trackers."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name | control):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "u1.tokens_pruned_block_mean": "effect",
    "u1.relative_auc": "effect",
    "u2.unified_minus_search_only": "effect",
    "u2.unified_minus_template_only": "effect",
    "u3.aware_minus_unaware": "effect",
    "regime.baseline_minus_trivial": "effect",
    "regime.tokens_pruned.unified": "effect",
    "regime.tokens_pruned.unaware": "effect",
    "regime.tokens_pruned.search_only": "effect",
    "regime.tokens_pruned.template_only": "effect",
    "regime.macs_relative.search_only": "effect",
    "regime.macs_relative.template_only": "effect",
    "regime.template_pruned.unified": "effect",
    "regime.template_pruned.unaware": "effect",
    "controls.seed_aa": "control",
    "controls.seed_aa_ratio": "control",
    "controls.latency_aa_b1": "control",
    "controls.latency_aa_b32": "control",
}
