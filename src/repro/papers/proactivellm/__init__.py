"""ProactiveLLM: deciding when to interact from endogenous states (spec: shared/specs/proactivellm.md)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "a1.synthmt.effect": "effect",
    "a1.synthqa.effect": "effect",
    "a2.synthmt.v3_minus_v2": "effect",
    "a2.synthmt.v2_minus_v0": "effect",
    "a2.synthqa.v3_minus_v2": "effect",
    "a2.synthqa.v2_minus_v0": "effect",
    "a3.synthmt.entropy": "effect",
    "a3.synthmt.maxprob": "effect",
    "a3.synthmt.attention": "effect",
    "a3.synthqa.entropy": "effect",
    "a3.synthqa.maxprob": "effect",
    "a3.synthqa.attention": "effect",
    **{f"regime.{t}.{k}": "effect" for t in ("synthmt", "synthqa")
       for k in ("v0_read_all", "read_all_ratio", "span_entropy", "span_maxprob", "span_attention")},
    **{f"controls.seed_aa{kind}_{t}": "control" for t in ("synthmt", "synthqa") for kind in ("", "_auroc")},
}
