"""miniReranker: efficient point-wise MLLM reranking with a reusable document KV cache."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name | control):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "m1.vision_first_minus_best_other": "effect",
    "m2.flops_share_paper_like": "effect",
    "m2.time_share_paper_like": "effect",
    "m2.ndcg_ratio": "effect",
    "regime.dense_ndcg10": "effect",
    "regime.dense_minus_first_stage": "effect",
    "controls.seed_aa": "control",
    "controls.seed_aa_ratio": "control",
    "controls.timing_aa": "control",
}
