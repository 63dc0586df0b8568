"""MLflow: an experiment per paper, a parent run per (paper, profile, params hash), a child run per job.

A job does not import MLflow (2-3 s of its start-up and logging): it queues one small record under
`.repro/mlflow-queue/`, and `flush` logs every queued record in one process, with the jobs' real
start and end times. The workflow flushes when Snakemake finishes (onsuccess and onerror), so the
store is written by one process at a time and no job races on a fresh sqlite schema. A record that
fails to log stays queued for the next flush. The report rule queues a `report` record: the parent
run then carries the claim verdicts (tags), the check effects (metrics) and the report (artifacts),
and ends when the report was written.

The store defaults to the embedded sqlite file `mlflow.db` at the repo root; `MLFLOW_TRACKING_URI`
overrides it (a shared server).
"""
from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

from repro.core.config import REPO_ROOT
from repro.core.io import atomic_write_json, read_json

PARENT_TAG = "repro.parent"
QUEUE = REPO_ROOT / ".repro" / "mlflow-queue"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def _flatten(obj, prefix: str = "") -> dict:
    flat = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
    else:
        flat[prefix[:-1]] = obj
    return flat


def numeric(metrics: dict) -> dict[str, float]:
    """The numbers of a nested metrics dict, by dotted key (MLflow metrics are floats)."""
    return {k: float(v) for k, v in _flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _enqueue(record: dict) -> Path:
    path = QUEUE / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    atomic_write_json(path, record)
    return path


def enqueue_job(*, paper: str, profile: str, parent_hash: str, run_name: str, params: dict, metrics: dict,
                provenance: dict, artifacts: list[Path], start: float, end: float) -> Path:
    """Queue one job's child run (start/end: seconds since the epoch)."""
    return _enqueue({"kind": "job", "paper": paper, "profile": profile, "parent_hash": parent_hash,
                     "run_name": run_name, "params": params, "metrics": metrics, "provenance": provenance,
                     "artifacts": [str(Path(a).resolve()) for a in artifacts], "start": start, "end": end})


def enqueue_report(*, paper: str, profile: str, parent_hash: str, metrics: dict, tags: dict,
                   artifacts: list[Path], end: float) -> Path:
    """Queue what the parent run shows once the report exists: effects, verdicts, the report."""
    return _enqueue({"kind": "report", "paper": paper, "profile": profile, "parent_hash": parent_hash,
                     "metrics": metrics, "tags": tags, "artifacts": [str(Path(a).resolve()) for a in artifacts],
                     "end": end})


def _experiment_id(client, paper: str) -> str:
    exp = client.get_experiment_by_name(paper)
    if exp is not None:
        return exp.experiment_id
    artifacts = (REPO_ROOT / "mlartifacts" / paper).as_uri()
    return client.create_experiment(paper, artifact_location=artifacts)


def parent_run_id(client, paper: str, profile: str, phash: str, start: float | None = None) -> str:
    """Find or create the parent run of this paper/profile/params-hash (running until its report)."""
    exp_id = _experiment_id(client, paper)
    query = (f"tags.`{PARENT_TAG}` = 'true' and tags.`repro.profile` = '{profile}' "
             f"and tags.`repro.params_hash` = '{phash}'")
    found = client.search_runs([exp_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=f"{paper} [{profile}] {phash}",
                            start_time=int(1000 * (start or time.time())),
                            tags={PARENT_TAG: "true", "repro.profile": profile,
                                  "repro.params_hash": phash, "repro.paper": paper})
    return run.info.run_id


def _log_job(client, rec: dict) -> None:
    from mlflow.entities import Metric, Param

    parent = parent_run_id(client, rec["paper"], rec["profile"], rec["parent_hash"], rec["start"])
    tags = {"mlflow.parentRunId": parent, "repro.profile": rec["profile"], "repro.paper": rec["paper"]}
    tags.update({f"repro.{k}": str(v) for k, v in _flatten(rec["provenance"]).items()})
    run = client.create_run(_experiment_id(client, rec["paper"]), run_name=rec["run_name"], tags=tags,
                            start_time=int(1000 * rec["start"]))
    run_id = run.info.run_id
    params = {k: str(v)[:6000] for k, v in _flatten(rec["params"]).items()}
    stamp = int(1000 * rec["end"])
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(k, v, stamp, 0) for k, v in numeric(rec["metrics"]).items()])
    _log_artifacts(client, run_id, rec["artifacts"])
    client.set_terminated(run_id, end_time=stamp)


def _log_report(client, rec: dict) -> None:
    from mlflow.entities import Metric, RunTag

    parent = parent_run_id(client, rec["paper"], rec["profile"], rec["parent_hash"], rec["end"])
    stamp = int(1000 * rec["end"])
    client.log_batch(parent, metrics=[Metric(k, v, stamp, 0) for k, v in numeric(rec["metrics"]).items()],
                     tags=[RunTag(k, str(v)) for k, v in rec["tags"].items()])
    _log_artifacts(client, parent, rec["artifacts"])
    client.set_terminated(parent, end_time=stamp)


def _log_artifacts(client, run_id: str, paths: list[str]) -> None:
    for path in paths:
        if Path(path).exists():  # a later run may have replaced the folder; the numbers are logged
            client.log_artifact(run_id, path)


def flush(queue: Path = QUEUE) -> int:
    """Log every queued record, oldest first; returns how many were logged."""
    records = sorted(queue.glob("*.json")) if queue.is_dir() else []
    if not records:
        return 0
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    for path in records:
        rec = read_json(path)
        (_log_job if rec["kind"] == "job" else _log_report)(client, rec)
        path.unlink()
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description="Log the queued job and report records to MLflow")
    parser.add_argument("command", choices=["flush"])
    parser.parse_args()
    logged = flush()
    print(f"MLflow: logged {logged} queued record(s) to {tracking_uri()}")


if __name__ == "__main__":
    main()
