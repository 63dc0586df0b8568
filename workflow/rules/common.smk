# Helpers shared by every paper's rules: params validation, result paths, stage commands.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from repro.core import config as rc  # noqa: E402  (light: no torch)
from repro.core.deps import module_sources  # noqa: E402

try:  # every params file is checked before any job starts; the message names file and key
    rc.validate_config(config)
    PARAMS = {p.stem: rc.load_paper(p.stem, p) for p in sorted(Path("params").glob("*.yaml"))
              if p.name != "config.yaml"}
except rc.ParamsError as err:
    raise WorkflowError(str(err)) from None

PROFILE = config["profile"]
SEED = config["seed"]
PAPERS = config["papers"]
for _paper in PAPERS:
    if _paper not in PARAMS:
        raise WorkflowError(f"params/config.yaml: papers lists {_paper!r} but params/{_paper}.yaml is missing")

REPORT_INPUTS = {}  # paper -> {"summary": dir, "stages": [dirs]}, filled by each paper's .smk
SNAPSHOT = {}  # paper -> dirs that `snakemake snapshot` puts under DVC


def results(paper, *parts):
    return "/".join(["results", PROFILE, paper, *parts])


def section(paper, names):
    """What a job reads: declared as `params:` so only a change to these keys re-runs it."""
    return {n: PARAMS[paper][PROFILE][n] for n in names}


def code(module):
    """Source files a stage runs, as inputs: editing one re-runs the jobs that import it."""
    return module_sources(module)


# Jobs import the package from this checkout's src/ (not whichever copy pip installed), run the
# interpreter that runs Snakemake, and never reach for the hub.
PYTHON = f"PYTHONPATH={Path(workflow.basedir) / 'src'} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 {sys.executable}"


def stage(paper, name, sections, wildcards=()):
    """Shell command of a stage job; declared inputs (except code) are passed by name."""
    wc = " ".join(f"--wildcard {w}={{wildcards.{w}}}" for w in wildcards)
    tracking = "" if config["tracking"]["mlflow"] else "--no-tracking"
    return (
        f"{PYTHON} -m repro.papers.{paper}.{name} --paper {paper} --stage {name} "
        f"--profile {PROFILE} --sections {','.join(sections)} --seed {SEED} --threads {{threads}} "
        f"--out {{output}} {{params.inputs}} {wc} {tracking}"
    )


def named_inputs(wildcards, input):
    return " ".join(f"--input {k}={v}" for k, v in input.items() if k != "code")


def timing_threads():
    """Timing jobs take every core so no other job runs beside them (clusters: set-threads)."""
    return workflow.cores


onstart:
    # Create the MLflow store, experiments and parent runs once: parallel jobs on a fresh
    # sqlite file would race to create its schema.
    if config["tracking"]["mlflow"]:
        parents = " ".join(
            f"--parent {p}:{PROFILE}:{rc.parent_hash(PARAMS[p][PROFILE], SEED)}" for p in PARAMS
        )
        shell(f"{PYTHON} -m repro.core.tracking init {parents}")
