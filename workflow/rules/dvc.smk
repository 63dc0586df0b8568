# `snakemake --cores 1 snapshot` (`make snapshot`): verify every job folder of the enabled papers
# against its recorded hashes, put results/<profile>/<paper> and reports/<profile> under DVC with
# their records in snapshots/<profile>/ (commit those), and push. Restore: `make restore`.


rule snapshot:
    input:
        [path for p in PAPERS for path in REPORT_INPUTS[p]["stages"]],
        f"reports/{RUN}/index.md",
    output:
        f"results/{RUN}/dvc-snapshot.json",
    params:
        targets=" ".join([results(p) for p in PAPERS] + [f"reports/{RUN}"]),
    log:
        f"logs/{RUN}/snapshot.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        f"{PYTHON} -m repro.core.snapshot push --profile {PROFILE} --out {{output}} {{params.targets}} > {{log}} 2>&1"
