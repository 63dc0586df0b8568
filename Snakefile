# Reproduces the papers enabled in params/config.yaml. Rules live in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pruninginfersim.smk"
include: "workflow/rules/routing_free_moe.smk"
include: "workflow/rules/echorl.smk"
include: "workflow/rules/utptrack.smk"
include: "workflow/rules/proactivellm.smk"
include: "workflow/rules/tays.smk"
include: "workflow/rules/memory_r2.smk"
include: "workflow/rules/minireranker.smk"
include: "workflow/rules/hidrop.smk"
include: "workflow/rules/mem2evolve.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dvc.smk"


rule all:
    input:
        f"reports/{RUN}/index.md",
    default_target: True
