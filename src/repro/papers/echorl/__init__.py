"""EchoRL: learning from advantage-degenerated rollouts in RLVR (spec: shared/specs/echorl.md)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "e1.increase": "effect",
    "e2.id": "effect",
    "e2.ood": "effect",
    "e3.vs_random.id": "effect",
    "e3.vs_random.ood": "effect",
    "e3.vs_min_entropy.id": "effect",
    "e3.vs_min_entropy.ood": "effect",
    "regime.degenerate_at_start": "effect",
    "regime.grpo_over_sft": "effect",
    "regime.clip_share": "effect",
    "regime.clip_share_every_arm": "effect",
    "regime.ood_baseline": "effect",
    "controls.seed_aa_id": "control",
    "controls.seed_aa_ood": "control",
}
