"""UTPTrack: unified token pruning (search region, dynamic and static template) for one-stream trackers."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "u1.tokens_pruned_block_mean": "effect",
    "u1.relative_auc": "effect",
    "u2.unified_minus_search_only": "effect",
    "u2.unified_minus_template_only": "effect",
    "u3.aware_minus_unaware": "effect",
}
