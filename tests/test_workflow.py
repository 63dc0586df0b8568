"""The workflow's own shape, without running jobs: the SLURM profile plans every job of the DAG with
its resources."""
import os
import re
import subprocess
import sys

import pytest

from repro.core.config import REPO_ROOT


def dry_run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # --forceall: plan every job whatever results this checkout already holds
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--forceall", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def planned_jobs(out: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m or m.group(1) == "all":
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        pairs = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        jobs.append((m.group(1), pairs))
    return jobs


@pytest.mark.parametrize("profile", ["mini", "paper"])
def test_slurm_profile_plans_every_job_with_its_resources(profile):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = dry_run("--workflow-profile", "workflow/profiles/slurm", "--config", f"profile={profile}")
    jobs = planned_jobs(out)
    total = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    assert len(jobs) == total - 1 > 50  # every job but `all`
    for rule, res in jobs:
        assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0, rule
        # a job that computes on the device gets a GPU, on the GPU partition
        assert res["slurm_partition"] == ("gpu" if int(res.get("gpu", 0)) else "cpu"), (rule, res)
    rules = {r for r, _ in jobs}
    assert {"pruninginfersim_latency", "echorl_rl", "paper_report", "index"} <= rules
