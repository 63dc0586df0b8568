"""HiDrop: hierarchical visual token dropping (late injection, concave pyramid, early exit) in a tiny MLLM."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name | control):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "h1.compression": "effect",
    "h1.accuracy_ratio": "effect",
    "h1.image_gain_share": "effect",
    "h1.vanilla_minus_blind": "effect",
    "h2.train_speedup": "effect",
    "h2.visual_share": "effect",
    "h3.hidrop_minus_pdrop": "effect",
    "h3.budget_ratio": "effect",
    "controls.seed_aa": "control",
    "controls.seed_aa_ratio": "control",
    "controls.timing_train": "control",
    "controls.timing_prefill": "control",
}
