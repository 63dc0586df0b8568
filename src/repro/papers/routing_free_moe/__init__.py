"""Routing-Free MoE: experts that activate themselves, unified adaptive balancing (see method.py)."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "r1.rf_minus_topk_loss": "effect",
    "r1.rf_minus_unigram": "effect",
    "r1.topk_minus_unigram": "effect",
    "r1.rf_over_topk_train_compute": "effect",
    "r2.abs_gap": "effect",
    "r2.peak_departure": "effect",
    "r3.expert_cv_mu0_minus_mu1": "effect",
    "r3.token_cv_mu1_minus_mu0": "effect",
    "r3.abs_gap_mu_low": "effect",
    "r3.abs_gap_mu_high": "effect",
    "r4.rise_below_beyond_spread": "effect",
    "r4.rise_above_beyond_spread": "effect",
    "r4.min_step_away": "effect",
    "r4.max_step_rel": "effect",
    "r4.density_ratio_low_theta": "effect",
    "r4.density_ratio_high_theta": "effect",
    "controls.seed_aa": "control",
}
