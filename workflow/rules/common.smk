# Helpers shared by every paper's rules: params validation, result paths, and `stage`, the one
# shape of a pipeline rule. A paper's rule file is a list of `stage(...)` calls.
import itertools
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from repro.core import config as rc  # noqa: E402  (light: no torch)
from repro.core import tracking  # noqa: E402  (light: MLflow is imported by the flusher process only)
from repro.core import warm  # noqa: E402  (light: the server process imports torch)
from repro.core.deps import module_sources  # noqa: E402

try:  # every params file is checked before any job starts; the message names file and key
    rc.validate_config(config)
    PARAMS = {p.stem: rc.load_paper(p.stem, p) for p in sorted(Path("params").glob("*.yaml"))
              if p.name != "config.yaml"}
except rc.ParamsError as err:
    raise WorkflowError(str(err)) from None

PROFILE = config["profile"]
SEED = config["seed"]
SEED_OFFSET = config["seed_offset"]
RUN = rc.run_name(PROFILE, SEED_OFFSET)  # results/<RUN>/, reports/<RUN>/, logs/<RUN>/
PAPERS = config["papers"]
for _params in PARAMS.values():  # a replication: every rule and job sees the shifted seeds
    _params[PROFILE] = rc.shift_seeds(_params[PROFILE], SEED_OFFSET)
for _paper in PAPERS:
    if _paper not in PARAMS:
        raise WorkflowError(f"params/config.yaml: papers lists {_paper!r} but params/{_paper}.yaml is missing")

REPORT_INPUTS = {}  # paper -> {"summary": dir, "stages": [dirs]}, filled by `stage`
JOBS = {}  # (paper, stage) -> {wildcard values: output dir} of every job of the stage
CONDA_ENV = "../envs/repro.yml"
# Jobs import the package from this checkout's src/ (not whichever copy pip installed), run the
# interpreter that runs Snakemake, never reach for the hub, and hash str the same way in every run
# (set iteration order; Python reads PYTHONHASHSEED only at start-up, so it is set here).
JOB_ENV = {"PYTHONPATH": str(Path(workflow.basedir) / "src"), "PYTHONHASHSEED": str(SEED), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
PYTHON = " ".join([*(f"{k}={v}" for k, v in JOB_ENV.items()), sys.executable])
# each job runs in a fork of one process that imported torch and transformers once (repro.core.warm;
# a job saves 2.6-4.8 s, measured); without it, e.g. on a cluster node, the job runs cold, the same code
WARM_SOCKET = Path(tempfile.gettempdir()) / f"repro-warm-{os.getpid()}.sock"


def results(paper, *parts):
    return os.path.join("results", RUN, paper, *parts)


def section(paper, names):
    """What a job reads: declared as `params:` so only a change to these keys re-runs it."""
    return {n: PARAMS[paper][PROFILE][n] for n in names}


def code(module):
    """Source files a stage runs, as inputs: editing one re-runs the jobs that import it."""
    return module_sources(module)


def product(**values):
    """Every combination of wildcard values, e.g. product(arm=["a", "b"], seed=[0, 1])."""
    return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]


def outputs(paper, name, key=None, **only):
    """{input name: output dir} of the jobs of a stage (those whose wildcards match `only`); names
    join the job's wildcard parts with `_` (evaluate_static_depth, rl_grpo_seed0) unless
    `key(wildcards dict)` names them."""
    return {(key(w) if key else "_".join([name, *_parts(w)]).format(**w)): path
            for w, path in JOBS[(paper, name)] if all(w[k] == v for k, v in only.items())}


def _parts(wildcards):
    return [f"seed{{{w}}}" if w == "seed" else f"{{{w}}}" for w in wildcards]


def named_inputs(wildcards, input):
    """--input name=path for each named input; an input function may return [] to leave its name out."""
    return " ".join(f"--input {k}={v}" for k, v in input.items() if k != "code" and str(v))


def stage(paper, name, *, reads, input=None, each=None, narrow=None, threads=1, mem_mb=2000, gpu=False,
          timing=False, summary=False):
    """Rule `<paper>_<name>`: runs `python -m repro.papers.<paper>.<name>` into
    results/<profile>/<paper>/<name>[/<wildcard>...], one job per entry of `each` (dicts of wildcard
    values; `seed` becomes `seed<N>`). `reads`: the params sections the job reads. `narrow`: for a
    section of which a job depends on one part only, {section: (section, wildcards) -> that part},
    so editing another part re-runs nothing here. `gpu`: the job computes on the device when there is one
    (one GPU; the gpu and slurm profiles schedule by it). `timing` jobs ask for every core of the
    machine, capped by --cores (clusters: set-threads).
    `summary` marks the stage whose metrics and figures the report reads. Returns the output pattern, for the next stages' inputs."""
    each = each or [{}]
    wildcards = list(each[0])
    parts = _parts(wildcards)
    output = results(paper, name, *parts)
    JOBS[(paper, name)] = [(w, output.format(**w)) for w in each]
    narrow = narrow or {}
    report_entry = REPORT_INPUTS.setdefault(paper, {"stages": []})
    report_entry["stages"] += [path for _, path in JOBS[(paper, name)]]
    if summary:
        report_entry["summary"] = output
    flags = " ".join(f"--wildcard {w}={{wildcards.{w}}}" for w in wildcards)
    if not config["tracking"]["mlflow"]:
        flags += " --no-tracking"

    rule:
        name:
            f"{paper}_{name}"
        input:
            **(input or {}),
            code=code(f"repro.papers.{paper}.{name}"),
        output:
            report(directory(output), patterns=["{name}.png"], caption=f"../report/{paper}.rst",
                   category=paper) if summary else directory(output),
        wildcard_constraints:
            **{w: "|".join(re.escape(str(v)) for v in sorted({str(j[w]) for j in each})) for w in wildcards},
        params:
            p=lambda wc: {s: narrow[s](PARAMS[paper][PROFILE][s], wc) if s in narrow else PARAMS[paper][PROFILE][s]
                          for s in reads},
            inputs=named_inputs,
        log:
            os.path.join("logs", RUN, paper, name, *parts) + ".log",
        conda:
            CONDA_ENV
        threads: (os.cpu_count() or 1) if timing else threads
        resources:
            mem_mb=mem_mb,
            gpu=int(gpu),
        shell:
            f"{PYTHON} -m repro.core.warm repro.papers.{paper}.{name} --paper {paper} --stage {name} --profile {PROFILE} "
            f"--seed-offset {SEED_OFFSET} "
            f"--sections {','.join(reads)} --params-sha {rc.params_hash(section(paper, reads))} "
            f"--seed {SEED} --threads {{threads}} --out {{output}} "
            f"{{params.inputs}} {flags} > {{log}} 2>&1"

    return output


def start_tracking():
    """Jobs queue their MLflow records; one flusher process (the store's only writer) logs them while
    the workflow runs, so `mlflow ui` shows each job as it starts and ends."""
    if config["tracking"]["mlflow"]:
        tracking.start()


def flush_tracking():
    """The flusher's last flush: every job of this run is in the store when Snakemake returns."""
    if config["tracking"]["mlflow"]:
        print(tracking.stop())


def no_local_rate_limit():
    """Snakemake's default job rate limit (--max-jobs-per-timespan 100/1s) re-arms a 1-s wake-up timer
    on every scheduling pass, and each pass a finished job triggers starts one more perpetual chain of
    them, so scheduling passes grow with the square of the jobs run (snakemake 9.27 job_scheduler.py;
    upstream PR #3744): by the middle of the 455-job mini DAG Snakemake itself took ~25% of a core.
    Two local cores need no rate limit; cluster executors keep theirs. (The setting cannot be unset
    from the command line, and the scheduler exists only from onstart on.)"""
    if workflow.local_exec:
        workflow.scheduler.job_rate_limiter = None


onstart:
    no_local_rate_limit()
    start_tracking()
    warm.start(WARM_SOCKET, JOB_ENV, log=Path("logs", RUN, "warm.log"))


onsuccess:
    warm.stop(WARM_SOCKET)
    flush_tracking()


onerror:
    warm.stop(WARM_SOCKET)
    flush_tracking()
