"""MLflow while the workflow runs, end to end (one small paper's smoke chain in a temporary copy):
the store holds each finished job's run while Snakemake is still running, and at the end every job
has exactly one run. Then a damaged input under the default workflow profile: the terminal shows the
failed job's log, which names the file and the hash its job recorded."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro.core.config import REPO_ROOT

pytestmark = pytest.mark.e2e
SKIP = {".git", ".venv", "results", "reports", "logs", ".repro", "mlflow.db", "mlartifacts", ".snakemake",
        "dvc-storage", ".pytest_cache", "__pycache__"}
PAPER = "mem2evolve"  # short jobs, several at a time, and a report: the cheapest such chain
LAG_S = 10.0  # a run is in the store this long after its job ended, at most


def snakemake(repo: Path, *args: str, **kwargs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.Popen([sys.executable, "-m", "snakemake", *args, "--config", "profile=smoke"], cwd=repo,
                            env=env, **kwargs)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Run the chain, polling the store every 0.5 s: when each run was first seen, and in which state."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO_ROOT, repo, dirs_exist_ok=True, ignore=lambda d, names: [n for n in names if n in SKIP])
    with open(repo / "snakemake.out", "w") as out:
        started = time.time()
        proc = snakemake(repo, f"reports/smoke/{PAPER}", "--cores", "2", "--scheduler", "greedy",
                         stdout=out, stderr=subprocess.STDOUT)
        seen, client, exp, ready = {}, None, None, None  # seen: (run id, status) -> first time seen while Snakemake ran
        while proc.poll() is None:
            if client is None and (repo / ".repro" / "flusher" / "ready").exists():  # the flusher made the store
                from mlflow import MlflowClient

                ready = time.time()
                client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
            if client is not None and exp is None:
                exp = client.get_experiment_by_name(PAPER)
            if exp is not None:
                now = time.time()
                for run in client.search_runs([exp.experiment_id], max_results=100):
                    if "repro.job_id" in run.data.tags:
                        seen.setdefault((run.info.run_id, run.info.status), now)
            time.sleep(0.5)
        exited = time.time()
    assert proc.returncode == 0, (repo / "snakemake.out").read_text()[-4000:]
    return SimpleNamespace(repo=repo, seen=seen, started=started, ready=ready, exited=exited, client=client)


def test_runs_appear_while_the_workflow_runs_and_each_job_has_one(chain):
    repo, seen, ready, exited, client = chain.repo, chain.seen, chain.ready, chain.exited, chain.client
    exp = client.get_experiment_by_name(PAPER)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    jobs = sorted((repo / "results/smoke" / PAPER).rglob("metrics.json"))
    children = [r for r in runs if "repro.job_id" in r.data.tags]
    assert len(jobs) >= 5 and len(children) == len(jobs)  # exactly one run per job
    assert len({r.data.tags["repro.job_id"] for r in children}) == len({r.info.run_name for r in children}) == len(jobs)
    assert all(r.info.status == "FINISHED" for r in runs)  # the parent too: the report ended it
    (parent,) = [r for r in runs if r.data.tags.get("repro.parent") == "true"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    lags = {}
    for run in children:
        # logged once the job ended and the flusher is up (the first jobs wait for its start-up)
        due = max(run.info.end_time / 1000, ready)
        first = seen.get((run.info.run_id, "FINISHED"))
        if due < exited - LAG_S:  # due well before Snakemake ended: already in the store by then
            assert first is not None and first - due < LAG_S, (run.info.run_name, first, due)
        if first is not None:
            lags[run.info.run_name] = first - due
    print(f"runs in the store {statistics.median(lags.values()):.1f} s (median), {max(lags.values()):.1f} s (max) "
          f"after their job ended (or the flusher was up, {ready - chain.started:.1f} s into the run); "
          f"{len(lags)} of {len(children)} seen before Snakemake exited; {sum(s == 'RUNNING' for _, s in seen)} "
          "seen RUNNING")
    assert len(lags) >= len(children) // 2
    assert any(status == "RUNNING" for _, status in seen)  # a job shows from its start


def test_a_damaged_input_is_named_in_the_terminal(chain):
    repo = chain.repo
    data = repo / "results/smoke" / PAPER / "data"
    recorded = json.loads((data / "metrics.json").read_text())["provenance"]["outputs_sha256"]
    rel, digest = max(recorded.items(), key=lambda kv: (data / kv[0]).stat().st_size)
    damaged = data / rel
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    proc = snakemake(repo, "--workflow-profile", "workflow/profiles/default", f"results/smoke/{PAPER}/calibrate",
                     "--forcerun", f"{PAPER}_calibrate", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    terminal = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    assert f"results/smoke/{PAPER}/data/{rel}: sha256 " in terminal and f"its job recorded {digest[:16]}..." in terminal
