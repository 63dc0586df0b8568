"""The whole DAG at profile smoke in a temporary copy of the repo: reports, metrics, MLflow runs,
then re-run planning after a params edit, a source edit, and on an unchanged tree."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repro.core.config import REPO_ROOT
from repro.report.verdicts import VERDICTS

pytestmark = pytest.mark.e2e
SKIP = {".git", ".venv", "results", "reports", "logs", ".repro", "mlflow.db", "mlartifacts", ".snakemake", "dvc-storage",
        ".pytest_cache", "__pycache__"}


def snakemake(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2", "--scheduler", "greedy",
                           "--config", "profile=smoke"], cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def planned(repo: Path) -> dict[str, int]:
    """Rules (and job counts) a dry run would execute."""
    out = snakemake(repo, "--dry-run")
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO_ROOT, repo, dirs_exist_ok=True, ignore=lambda d, names: [n for n in names if n in SKIP])
    snakemake(repo)
    return repo


def enabled_papers(repo: Path) -> list[str]:
    import yaml

    return yaml.safe_load((repo / "params/config.yaml").read_text())["papers"]


def test_reports_and_metrics(smoke_repo):
    index = (smoke_repo / "reports/smoke/index.md").read_text()
    assert "not meaningful" in index
    for paper in enabled_papers(smoke_repo):
        assert f"[{paper}]({paper}/report.md)" in index
        report = (smoke_repo / f"reports/smoke/{paper}/report.md").read_text()
        claims = json.loads((smoke_repo / f"reports/smoke/{paper}/verdicts.json").read_text())["claims"]
        assert claims and all(f"| {c['id']} |" in report for c in claims)
        assert (smoke_repo / f"reports/smoke/{paper}/report.html").exists()
        for path in (smoke_repo / "results/smoke" / paper).rglob("metrics.json"):
            m = json.loads(path.read_text())
            assert m["provenance"]["profile"] == "smoke" and m["provenance"]["seed"] == 0
            assert m["provenance"]["paper"] == paper
        assert (smoke_repo / f"reports/smoke/{paper}/forest.png").stat().st_size > 1000
        assert "## Controls" in report
        for claim in claims:  # every check shows its effect with an interval (or says why not)
            assert claim["verdict"] in VERDICTS and claim["checks"]
            assert claim["regime"] in ("met", "not reached", "none") and f"### {claim['id']}:" in report
            if claim["regime"] == "not reached":  # no decided verdict stands on a failed regime
                assert claim["verdict"] == "inconclusive" and claim["reason"].startswith("regime not reached")
            for check in claim["checks"]:
                assert {"value", "ci", "n", "unit"} <= set(check["effect"]) and check["reason"]
    assert (smoke_repo / "reports/smoke/forest.png").stat().st_size > 1000
    report = (smoke_repo / "reports/smoke/pruninginfersim/report.md").read_text()
    assert re.search(r"\| P1 \|.*\*\*(reproduced|not reproduced|inconclusive|not checkable)\*\*", report)
    assert (smoke_repo / "reports/smoke/pruninginfersim/frontier.png").exists()
    metrics = sorted((smoke_repo / "results/smoke/pruninginfersim").rglob("metrics.json"))
    assert len(metrics) == 18  # data, train, 7 prune (6 families, dynamic depth on 2 router seeds), 7 evaluate, latency, analysis
    assert not list((smoke_repo / "results").rglob("*.partial"))
    # jobs ran in forks of the warm server; none had to fall back to cold
    assert "Traceback" not in (smoke_repo / "logs/smoke/warm.log").read_text()
    assert not [p for p in (smoke_repo / "logs/smoke").rglob("*.log") if "running cold" in p.read_text()]


def test_mlflow_parent_and_child_runs(smoke_repo):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_repo / 'mlflow.db'}")
    for paper in enabled_papers(smoke_repo):
        exp = client.get_experiment_by_name(paper)
        runs = client.search_runs([exp.experiment_id], max_results=5000)
        parents = [r for r in runs if r.data.tags.get("repro.parent") == "true"]
        assert len(parents) == 1 and parents[0].data.tags["repro.profile"] == "smoke"
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        jobs = list((smoke_repo / "results/smoke" / paper).rglob("metrics.json"))
        assert len(children) == len(jobs) > 0  # one child run per job
        parent = parents[0]  # ends with the report: verdicts as tags, effects as metrics, the report
        verdicts = json.loads((smoke_repo / f"reports/smoke/{paper}/verdicts.json").read_text())["claims"]
        assert {parent.data.tags[f"verdict.{c['id']}"] for c in verdicts} <= set(VERDICTS)
        assert parent.info.status == "FINISHED" and parent.info.end_time >= max(c.info.end_time for c in children)
        assert "report.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    exp = client.get_experiment_by_name("pruninginfersim")
    children = client.search_runs([exp.experiment_id], "tags.`repro.stage` = 'train'")
    assert len(children) == 1
    train = children[0]
    assert "val_loss" in train.data.metrics and train.data.params["train.steps"] == "4"
    assert train.data.tags["repro.seed"] == "0"
    names = {r.info.run_name for r in client.search_runs([exp.experiment_id], max_results=100)}
    assert {"prune[family=static_depth][seed=0]", "latency", "analysis"} <= names


def test_rerun_plans_only_what_depends_on_a_change(smoke_repo):
    assert planned(smoke_repo) == {}  # unchanged tree: nothing to do
    params = smoke_repo / "params/pruninginfersim.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("    p1_min_bound: 1.1\n", "    p1_min_bound: 1.2\n", 1))
        assert planned(smoke_repo) == {"pruninginfersim_analysis": 1, "paper_report": 1, "index": 1, "all": 1}
        params.write_text(original.replace("seq_len: 32, lr: 0.003, warmup: 1", "seq_len: 32, lr: 0.002, warmup: 1", 1))
        plan = planned(smoke_repo)
        assert plan["pruninginfersim_train"] == 1 and plan["pruninginfersim_evaluate"] == 7
        assert plan["pruninginfersim_latency"] == 1  # it times dynamic depth at the routers' measured rates
        assert "pruninginfersim_data" not in plan
    finally:
        params.write_text(original)
    source = smoke_repo / "src/repro/papers/pruninginfersim/latency.py"
    source.write_text(source.read_text() + "\n")
    plan = planned(smoke_repo)
    assert plan == {"pruninginfersim_latency": 1, "pruninginfersim_analysis": 1, "paper_report": 1,
                    "index": 1, "all": 1}
    snakemake(smoke_repo, "--touch")
    assert planned(smoke_repo) == {}


@pytest.mark.parametrize("edit, message", [
    (("steps: 4,", "steps: -4,"), "params/pruninginfersim.yaml: key 'smoke.train.steps'"),
    (("metric: p1.static_depth_efficiency", "metric: p1.static_depth_efficency"),
     "params/pruninginfersim.yaml: key 'claims.0.checks.0.metric': 'p1.static_depth_efficency' is not a metric"),
])
def test_bad_params_stop_before_any_job(smoke_repo, edit, message):
    params = smoke_repo / "params/pruninginfersim.yaml"
    original = params.read_text()
    assert edit[0] in original
    try:
        params.write_text(original.replace(*edit, 1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--config", "profile=smoke",
                               "--dry-run"], cwd=smoke_repo, env=env, capture_output=True, text=True)
        assert proc.returncode != 0
        assert message in proc.stdout + proc.stderr
    finally:
        params.write_text(original)


def test_snapshot_then_restore_on_a_clean_tree_plans_nothing(smoke_repo, tmp_path):
    """snapshot -> delete results, reports and Snakemake's state -> restore -> a dry run plans nothing;
    a damaged checkpoint is refused before anything is pushed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(smoke_repo / "src")
    subprocess.run(["git", "init", "-q"], cwd=smoke_repo, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "modify", "local", "url", str(tmp_path / "store")],
                   cwd=smoke_repo, check=True)
    snakemake(smoke_repo, "snapshot")
    records = {p.name for p in (smoke_repo / "snapshots/smoke").glob("*.dvc")}
    assert records == {f"results.{p}.dvc" for p in enabled_papers(smoke_repo)} | {"reports.dvc"}
    metrics = json.loads((smoke_repo / "results/smoke/pruninginfersim/train/metrics.json").read_text())
    for name in ("results", "reports", ".snakemake"):
        shutil.rmtree(smoke_repo / name)
    subprocess.run([sys.executable, "-m", "repro.core.snapshot", "restore", "--profile", "smoke"], cwd=smoke_repo,
                   env=env, check=True, capture_output=True)
    assert json.loads((smoke_repo / "results/smoke/pruninginfersim/train/metrics.json").read_text()) == metrics
    assert planned(smoke_repo) == {}
    ckpt = next((smoke_repo / "results/smoke/pruninginfersim/train").rglob("*.safetensors"))
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(AssertionError, match="snapshot"):
        snakemake(smoke_repo, "snapshot", "--forcerun", "snapshot")
    log = (smoke_repo / "logs/smoke/snapshot.log").read_text()
    assert f"{ckpt.relative_to(smoke_repo)}: sha256" in log and "do not match their recorded hashes" in log
