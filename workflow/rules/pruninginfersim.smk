# PruningInferSim: data -> train -> prune/{family} -> evaluate/{family}; latency (all families);
# analysis (frontier, bounds, taxonomy) -> report.
PIS = "pruninginfersim"
PIS_FAMILIES = PARAMS[PIS][PROFILE]["families"]


wildcard_constraints:
    family="|".join(PARAMS[PIS][PROFILE]["families"]),


rule pruninginfersim_data:
    input:
        code=code("repro.papers.pruninginfersim.data"),
    output:
        directory(results(PIS, "data")),
    params:
        p=lambda wc: section(PIS, ["data"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(PIS, "data", ["data"])


rule pruninginfersim_train:
    input:
        data=rules.pruninginfersim_data.output[0],
        code=code("repro.papers.pruninginfersim.train"),
    output:
        directory(results(PIS, "train")),
    params:
        p=lambda wc: section(PIS, ["quality_model", "train", "evaluate"]),
        inputs=named_inputs,
    threads: config["threads"]
    resources:
        mem_mb=4000,
    shell:
        stage(PIS, "train", ["quality_model", "train", "evaluate"])


rule pruninginfersim_prune:
    input:
        data=rules.pruninginfersim_data.output[0],
        model=rules.pruninginfersim_train.output[0],
        code=code("repro.papers.pruninginfersim.prune"),
    output:
        directory(results(PIS, "prune", "{family}")),
    params:
        p=lambda wc: section(PIS, ["prune"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        stage(PIS, "prune", ["prune"], wildcards=["family"])


rule pruninginfersim_evaluate:
    input:
        data=rules.pruninginfersim_data.output[0],
        model=rules.pruninginfersim_train.output[0],
        pruned=rules.pruninginfersim_prune.output[0],
        code=code("repro.papers.pruninginfersim.evaluate"),
    output:
        directory(results(PIS, "evaluate", "{family}")),
    params:
        p=lambda wc: section(PIS, ["prune", "evaluate"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        stage(PIS, "evaluate", ["prune", "evaluate"], wildcards=["family"])


rule pruninginfersim_latency:
    input:
        code=code("repro.papers.pruninginfersim.latency"),
    output:
        directory(results(PIS, "latency")),
    params:
        p=lambda wc: section(PIS, ["families", "latency_model", "latency", "prune"]),
        inputs=named_inputs,
    threads: timing_threads()
    resources:
        mem_mb=8000,
    shell:
        stage(PIS, "latency", ["families", "latency_model", "latency", "prune"])


rule pruninginfersim_analysis:
    input:
        **{f"quality_{f}": results(PIS, "evaluate", f) for f in PIS_FAMILIES},
        latency=rules.pruninginfersim_latency.output[0],
        code=code("repro.papers.pruninginfersim.analysis"),
    output:
        report(
            directory(results(PIS, "analysis")),
            patterns=["{name}.png"],
            caption="../report/pruninginfersim.rst",
            category="pruninginfersim",
        ),
    params:
        p=lambda wc: section(PIS, ["families", "analysis"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(PIS, "analysis", ["families", "analysis"])


REPORT_INPUTS[PIS] = {
    "summary": results(PIS, "analysis"),
    "stages": [results(PIS, "data"), results(PIS, "train")]
    + [results(PIS, s, f) for s in ("prune", "evaluate") for f in PIS_FAMILIES]
    + [results(PIS, "latency"), results(PIS, "analysis")],
}
SNAPSHOT[PIS] = [results(PIS, "train"), results(PIS, "analysis")]
