"""HiDrop: hierarchical visual token dropping (late injection, concave pyramid, early exit) in a tiny MLLM."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "h1.compression": "effect",
    "h1.accuracy_ratio": "effect",
    "h1.vanilla_minus_blind": "effect",
    "h2.train_speedup": "effect",
    "h3.hidrop_minus_pdrop": "effect",
}
