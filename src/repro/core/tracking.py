"""MLflow: an experiment per paper, a parent run per (paper, profile, params hash), a child run per job.

The store defaults to the embedded sqlite file `mlflow.db` at the repo root. Creating its schema is
not safe from two processes at once, so `init` (called from the Snakefile's onstart) creates the
store, the experiments and the parent runs before any job starts.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from repro.core.config import REPO_ROOT

PARENT_TAG = "repro.parent"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def _client():
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow, mlflow.MlflowClient()


def _experiment_id(client, paper: str) -> str:
    exp = client.get_experiment_by_name(paper)
    if exp is not None:
        return exp.experiment_id
    artifacts = (REPO_ROOT / "mlartifacts" / paper).as_uri()
    return client.create_experiment(paper, artifact_location=artifacts)


def parent_run_id(client, paper: str, profile: str, phash: str) -> str:
    """Find or create the parent run of this paper/profile/params-hash."""
    exp_id = _experiment_id(client, paper)
    query = (f"tags.`{PARENT_TAG}` = 'true' and tags.`repro.profile` = '{profile}' "
             f"and tags.`repro.params_hash` = '{phash}'")
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=f"{paper} [{profile}] {phash}",
                            tags={PARENT_TAG: "true", "repro.profile": profile,
                                  "repro.params_hash": phash, "repro.paper": paper})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def init(parents: list[tuple[str, str, str]]) -> None:
    """Create the store, experiments and parent runs once, before parallel jobs touch them."""
    _, client = _client()
    for paper, profile, phash in parents:
        parent_run_id(client, paper, profile, phash)


def _flatten(obj, prefix: str = "") -> dict:
    flat = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
    else:
        flat[prefix[:-1]] = obj
    return flat


def log_job(*, paper: str, profile: str, parent_hash: str, run_name: str, params: dict,
            metrics: dict, provenance: dict, artifacts: list[Path]) -> str:
    """One child run with params, numeric metrics, provenance tags and small artifacts."""
    mlflow, client = _client()
    parent = parent_run_id(client, paper, profile, parent_hash)
    exp_id = _experiment_id(client, paper)
    tags = {"mlflow.parentRunId": parent, "repro.profile": profile, "repro.paper": paper}
    tags.update({f"repro.{k}": str(v) for k, v in _flatten(provenance).items()})
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    flat_params = {k: str(v)[:6000] for k, v in _flatten(params).items()}
    numeric = {k: float(v) for k, v in _flatten(metrics).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    from mlflow.entities import Metric, Param

    client.log_batch(run_id, params=[Param(k, v) for k, v in flat_params.items()],
                     metrics=[Metric(k, v, 0, 0) for k, v in numeric.items()])
    for path in artifacts:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description="Create the MLflow store and parent runs")
    parser.add_argument("command", choices=["init"])
    parser.add_argument("--parent", action="append", default=[],
                        help="paper:profile:params_hash, repeatable")
    args = parser.parse_args()
    init([tuple(p.split(":")) for p in args.parent])


if __name__ == "__main__":
    main()
