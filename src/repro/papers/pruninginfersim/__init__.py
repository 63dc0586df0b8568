"""PruningInferSim: GEMM-centric taxonomy and benchmark of LLM pruning (see method.py)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "p1.static_depth_efficiency": "effect",
    "p1.lead_over_other_ranked": "effect",
    "p2.paper_order_holds": "effect",
    "p3.taxonomy_matches": "bool",
}
