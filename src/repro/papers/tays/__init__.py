"""TaYS: Think-as-You-See, streaming chain-of-thought over video (per-second reasoning units written
while the frames arrive), against interleaved and batch paradigms."""

# What the analysis stage writes that a claim may check (path -> effect | bool | name):
# params are validated against it before any job, and the report fails if the analysis
# did not write one.
ANALYSIS_METRICS = {
    "t1.ttft_minus_fifth_of_batch": "effect",
    "t2.delay_minus_half_of_batch": "effect",
    "t2.delay_ratio_to_interleaved": "effect",
    "t2.length_ratio.tays": "effect",
    "t2.length_ratio.interleaved": "effect",
    "t3.accuracy_minus_batch_units": "effect",
    "t3.deviation_minus_batch_units": "effect",
    "t3.batch_units_accuracy": "effect",
    "t3.batch_units_described": "effect",
    "controls.seed_aa": "control",
    "controls.seed_aa_deviation": "control",
    "controls.seed_aa_delay": "control",
    "controls.latency_aa": "control",
}
