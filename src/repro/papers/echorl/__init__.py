"""EchoRL: learning from advantage-degenerated rollouts in RLVR (spec: shared/specs/echorl.md)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "e1.increase": "effect",
    "e2.id": "effect",
    "e2.ood": "effect",
    "e3.vs_random": "effect",
    "e3.vs_min_entropy": "effect",
}
