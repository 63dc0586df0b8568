# One report per paper (claims beside measurements, verdicts) and the index of all papers.


wildcard_constraints:
    paper="|".join(PARAMS),


rule paper_report:
    input:
        unpack(lambda wc: REPORT_INPUTS[wc.paper]),
        code=code("repro.report.render"),
    output:
        directory(f"reports/{RUN}/{{paper}}"),
    params:
        claims=lambda wc: PARAMS[wc.paper]["claims"],
        stages=lambda wc, input: " ".join(f"--stage {s}" for s in input.stages),
        # the paper's MLflow parent run gets the verdicts and the report
        tracking=lambda wc: (f"--parent-hash {rc.parent_hash(PARAMS[wc.paper][PROFILE], SEED)}"
                             if config["tracking"]["mlflow"] else ""),
    log:
        f"logs/{RUN}/{{paper}}/report.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        f"{PYTHON} -m repro.report.render paper --paper {{wildcards.paper}} "
        f"--profile {PROFILE} --seed-offset {SEED_OFFSET} --summary {{input.summary}} {{params.stages}} {{params.tracking}} --out {{output}} "
        f"> {{log}} 2>&1"


rule index:
    input:
        reports=[f"reports/{RUN}/{p}" for p in PAPERS],
        code=code("repro.report.render"),
    output:
        md=f"reports/{RUN}/index.md",
        html=f"reports/{RUN}/index.html",
    params:
        reports=lambda wc, input: " ".join(f"--report {r}" for r in input.reports),
    log:
        f"logs/{RUN}/index.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        f"{PYTHON} -m repro.report.render index --profile {PROFILE} --seed-offset {SEED_OFFSET} {{params.reports}} "
        f"--out reports/{RUN} > {{log}} 2>&1"
