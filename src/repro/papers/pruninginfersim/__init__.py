"""PruningInferSim: GEMM-centric taxonomy and benchmark of LLM pruning (see method.py)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "p1.static_depth_efficiency": "effect",
    "p1.lead_over_other_ranked": "effect",
    "p1.static_depth_max_bound": "effect",
    "p1.other_ranked_families": "effect",
    "p2.lead_band1": "effect",
    "p2.lead_band2": "effect",
    "p2.lead_band3": "effect",
    "p2.dense_minus_unigram": "effect",
    "p2.lowrank_loss_at_largest": "effect",
    "p3.taxonomy_matches": "bool",
    "controls.timing_aa_bound": "control",
    "controls.timing_aa_frontier": "control",
    "controls.sparse24_as_dense": "control",
}
