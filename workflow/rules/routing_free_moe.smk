# Routing-Free MoE: data -> train/{arm}/seed{seed} (dense, top-k, routing-free, and routing-free at
# the other mus of the sweep) -> threshold (inference theta sweep) and evaluate -> analysis -> report.
from repro.papers.routing_free_moe import arms as rfm_arms  # noqa: E402  (light: no torch)

RFM = "routing_free_moe"
RFM_SECTION = PARAMS[RFM][PROFILE]
RFM_RUNS = {rfm_arms.run_key(a, s): results(RFM, "train", a, f"seed{s}") for a, s in rfm_arms.runs(RFM_SECTION)}
RFM_RF = {rfm_arms.run_key("rf", s): results(RFM, "train", "rf", f"seed{s}") for s in RFM_SECTION["seeds"]}


rule routing_free_moe_data:
    input:
        code=code("repro.papers.routing_free_moe.data"),
    output:
        directory(results(RFM, "data")),
    params:
        p=lambda wc: section(RFM, ["data"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(RFM, "data", ["data"])


rule routing_free_moe_train:
    input:
        data=rules.routing_free_moe_data.output[0],
        code=code("repro.papers.routing_free_moe.train"),
    output:
        directory(results(RFM, "train", "{arm}", "seed{seed}")),
    wildcard_constraints:
        arm=r"dense|topk|rf|rf_mu\d+",
        seed=r"\d+",
    params:
        p=lambda wc: section(RFM, ["model", "arms", "train"]),
        inputs=named_inputs,
    threads: 1  # small matrices: two 1-thread runs side by side beat one 2-thread run
    resources:
        mem_mb=3000,
    shell:
        stage(RFM, "train", ["model", "arms", "train"], wildcards=["arm", "seed"])


rule routing_free_moe_threshold:
    input:
        data=rules.routing_free_moe_data.output[0],
        **RFM_RF,
        code=code("repro.papers.routing_free_moe.threshold"),
    output:
        directory(results(RFM, "threshold")),
    params:
        p=lambda wc: section(RFM, ["threshold", "evaluate"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(RFM, "threshold", ["threshold", "evaluate"])


rule routing_free_moe_evaluate:
    input:
        data=rules.routing_free_moe_data.output[0],
        **RFM_RUNS,
        code=code("repro.papers.routing_free_moe.evaluate"),
    output:
        directory(results(RFM, "evaluate")),
    params:
        p=lambda wc: section(RFM, ["evaluate"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(RFM, "evaluate", ["evaluate"])


rule routing_free_moe_analysis:
    input:
        evaluate=rules.routing_free_moe_evaluate.output[0],
        threshold=rules.routing_free_moe_threshold.output[0],
        code=code("repro.papers.routing_free_moe.analysis"),
    output:
        report(
            directory(results(RFM, "analysis")),
            patterns=["{name}.png"],
            caption="../report/routing_free_moe.rst",
            category="routing_free_moe",
        ),
    params:
        p=lambda wc: section(RFM, ["arms", "mu_sweep", "analysis"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(RFM, "analysis", ["arms", "mu_sweep", "analysis"])


REPORT_INPUTS[RFM] = {
    "summary": results(RFM, "analysis"),
    "stages": [results(RFM, "data"), *RFM_RUNS.values(), results(RFM, "threshold"), results(RFM, "evaluate"),
               results(RFM, "analysis")],
}
SNAPSHOT[RFM] = [*RFM_RUNS.values(), results(RFM, "evaluate"), results(RFM, "analysis")]
