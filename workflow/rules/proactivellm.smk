# ProactiveLLM: data/{task} -> pretrain/{task} (shared backbone) -> train/{task} (arms V0 full, V1
# wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label head) -> evaluate/{task} (streaming READ/WRITE
# loop per decision head x tau, wait-k, read-then-generate, oracle; AUROC vs oracle sufficiency) ->
# analysis (claims A1-A3) -> report.
PLM = "proactivellm"
PLM_SECTION = PARAMS[PLM][PROFILE]
PLM_TASKS = sorted(PLM_SECTION["tasks"])


rule proactivellm_data:
    input:
        code=code("repro.papers.proactivellm.data"),
    output:
        directory(results(PLM, "data", "{task}")),
    wildcard_constraints:
        task="|".join(PLM_TASKS),
    params:
        p=lambda wc: section(PLM, ["data"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(PLM, "data", ["data"], wildcards=["task"])


rule proactivellm_pretrain:
    input:
        data=results(PLM, "data", "{task}"),
        code=code("repro.papers.proactivellm.pretrain"),
    output:
        directory(results(PLM, "pretrain", "{task}")),
    wildcard_constraints:
        task="|".join(PLM_TASKS),
    params:
        p=lambda wc: section(PLM, ["tasks", "model", "streaming", "pretrain"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=3000,
    shell:
        stage(PLM, "pretrain", ["tasks", "model", "streaming", "pretrain"], wildcards=["task"])


rule proactivellm_train:
    input:
        data=results(PLM, "data", "{task}"),
        backbone=results(PLM, "pretrain", "{task}"),
        code=code("repro.papers.proactivellm.train"),
    output:
        directory(results(PLM, "train", "{task}")),
    wildcard_constraints:
        task="|".join(PLM_TASKS),
    params:
        p=lambda wc: section(PLM, ["tasks", "model", "streaming", "arms", "train"]),
        inputs=named_inputs,
    threads: 1  # tiny matrices: the two tasks' 1-thread jobs side by side beat one 2-thread job
    resources:
        mem_mb=3000,
    shell:
        stage(PLM, "train", ["tasks", "model", "streaming", "arms", "train"], wildcards=["task"])


rule proactivellm_evaluate:
    input:
        data=results(PLM, "data", "{task}"),
        train=results(PLM, "train", "{task}"),
        code=code("repro.papers.proactivellm.evaluate"),
    output:
        directory(results(PLM, "evaluate", "{task}")),
    wildcard_constraints:
        task="|".join(PLM_TASKS),
    params:
        p=lambda wc: section(PLM, ["tasks", "streaming", "evaluate"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=3000,
    shell:
        stage(PLM, "evaluate", ["tasks", "streaming", "evaluate"], wildcards=["task"])


rule proactivellm_analysis:
    input:
        **{f"evaluate_{t}": results(PLM, "evaluate", t) for t in PLM_TASKS},
        code=code("repro.papers.proactivellm.analysis"),
    output:
        report(
            directory(results(PLM, "analysis")),
            patterns=["{name}.png"],
            caption="../report/proactivellm.rst",
            category="proactivellm",
        ),
    params:
        p=lambda wc: section(PLM, ["analysis"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(PLM, "analysis", ["analysis"])


REPORT_INPUTS[PLM] = {
    "summary": results(PLM, "analysis"),
    "stages": [*(results(PLM, "data", t) for t in PLM_TASKS), *(results(PLM, "pretrain", t) for t in PLM_TASKS),
               *(results(PLM, "train", t) for t in PLM_TASKS),
               *(results(PLM, "evaluate", t) for t in PLM_TASKS), results(PLM, "analysis")],
}
SNAPSHOT[PLM] = [*(results(PLM, "train", t) for t in PLM_TASKS),
                 *(results(PLM, "evaluate", t) for t in PLM_TASKS), results(PLM, "analysis")]
