# `snakemake --cores 1 snapshot`: put trained checkpoints and metrics of the enabled papers under
# DVC and push them to the default remote. Restore: `dvc pull` then `snakemake --touch`.


rule snapshot:
    input:
        [d for p in PAPERS for d in SNAPSHOT.get(p, [])],
        f"reports/{PROFILE}/index.md",
    output:
        f"results/{PROFILE}/dvc-snapshot.json",
    log:
        f"logs/{PROFILE}/snapshot.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        f"{PYTHON} -m repro.core.snapshot --out {{output}} {{input}} > {{log}} 2>&1"
