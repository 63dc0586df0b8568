# UTPTrack: data -> train (un-pruned tracker) -> finetune/{variant} (keep-rate warm-up; `baseline`
# fine-tuned as long, unpruned) -> evaluate/{variant} (fine-tuned and training-free, whole test
# sequences with template updates); latency (random init, all variants) -> analysis -> report.
UTP = "utptrack"
UTP_VARIANTS = list(PARAMS[UTP][PROFILE]["variants"])


def utp_variant_params(wc):
    """A variant's own entry (and the one whose budget it matches): editing another variant leaves
    this variant's jobs alone."""
    variants = PARAMS[UTP][PROFILE]["variants"]
    own = variants[wc.variant]
    return {wc.variant: own, **({own["match_budget"]: variants[own["match_budget"]]} if "match_budget" in own else {})}


rule utptrack_data:
    input:
        code=code("repro.papers.utptrack.data"),
    output:
        directory(results(UTP, "data")),
    params:
        p=lambda wc: section(UTP, ["data"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=3000,
    shell:
        stage(UTP, "data", ["data"])


rule utptrack_train:
    input:
        data=rules.utptrack_data.output[0],
        code=code("repro.papers.utptrack.train"),
    output:
        directory(results(UTP, "train")),
    params:
        p=lambda wc: section(UTP, ["model", "crops", "loss", "train"]),
        inputs=named_inputs,
    threads: 1  # small matrices: one thread each lets two jobs share the cores
    resources:
        mem_mb=3000,
    shell:
        stage(UTP, "train", ["model", "crops", "loss", "train"])


rule utptrack_finetune:
    input:
        data=rules.utptrack_data.output[0],
        model=rules.utptrack_train.output[0],
        code=code("repro.papers.utptrack.finetune"),
    output:
        directory(results(UTP, "finetune", "{variant}")),
    wildcard_constraints:
        variant="|".join(UTP_VARIANTS),
    params:
        p=lambda wc: {**section(UTP, ["crops", "finetune"]), "variant": utp_variant_params(wc)},
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=3000,
    shell:
        stage(UTP, "finetune", ["crops", "variants", "finetune"], wildcards=["variant"])


rule utptrack_evaluate:
    input:
        data=rules.utptrack_data.output[0],
        model=results(UTP, "finetune", "{variant}"),
        baseline=results(UTP, "finetune", "baseline"),
        code=code("repro.papers.utptrack.evaluate"),
    output:
        directory(results(UTP, "evaluate", "{variant}")),
    wildcard_constraints:
        variant="|".join(UTP_VARIANTS),
    params:
        p=lambda wc: {**section(UTP, ["crops", "evaluate"]), "variant": utp_variant_params(wc)},
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(UTP, "evaluate", ["crops", "variants", "evaluate"], wildcards=["variant"])


rule utptrack_latency:
    input:
        code=code("repro.papers.utptrack.latency"),
    output:
        directory(results(UTP, "latency")),
    params:
        p=lambda wc: section(UTP, ["model", "crops", "variants", "latency"]),
        inputs=named_inputs,
    threads: timing_threads()
    resources:
        mem_mb=2000,
    shell:
        stage(UTP, "latency", ["model", "crops", "variants", "latency"])


rule utptrack_analysis:
    input:
        **{f"evaluate_{v}": results(UTP, "evaluate", v) for v in UTP_VARIANTS},
        **{f"finetune_{v}": results(UTP, "finetune", v) for v in UTP_VARIANTS},
        latency=rules.utptrack_latency.output[0],
        code=code("repro.papers.utptrack.analysis"),
    output:
        report(
            directory(results(UTP, "analysis")),
            patterns=["{name}.png"],
            caption="../report/utptrack.rst",
            category="utptrack",
        ),
    params:
        p=lambda wc: section(UTP, ["variants", "analysis"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        stage(UTP, "analysis", ["variants", "analysis"])


REPORT_INPUTS[UTP] = {
    "summary": results(UTP, "analysis"),
    "stages": [results(UTP, "data"), results(UTP, "train"),
               *[results(UTP, "finetune", v) for v in UTP_VARIANTS],
               *[results(UTP, "evaluate", v) for v in UTP_VARIANTS],
               results(UTP, "latency"), results(UTP, "analysis")],
}
SNAPSHOT[UTP] = [results(UTP, "train"), *[results(UTP, "finetune", v) for v in UTP_VARIANTS],
                 *[results(UTP, "evaluate", v) for v in UTP_VARIANTS], results(UTP, "analysis")]
