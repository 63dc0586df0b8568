"""The job side of MLflow tracking: a job queues small JSON records, it never imports MLflow.

Importing MLflow would cost 2-3 s of every job's start-up, and parallel jobs writing one sqlite store
race on a fresh schema; so a job writes records under `.repro/mlflow-queue/` (atomically, named by
time so they sort in order), and one flusher process (`repro.core.tracking`) logs them:
- `start`: the job began; its child run appears as RUNNING;
- `job`: the job finished; the same run gets its metrics, tags and artifacts and is FINISHED;
- `failed`: the job raised; the same run is marked FAILED;
- `report`: a paper's report exists; its parent run gets the verdicts and ends.
Job records carry a `job_id` (one per job execution): the flusher finds the run by it, so a record
logged twice (a flush killed half-way) never makes a second run.

This module is the one the stage frame imports (and so an input of every stage rule): the flusher
lives elsewhere, so editing it re-runs no job.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from repro.core.config import REPO_ROOT
from repro.core.io import atomic_write_json

STATE = REPO_ROOT / ".repro"
QUEUE = STATE / "mlflow-queue"


def new_job_id() -> str:
    return uuid.uuid4().hex


def _enqueue(record: dict) -> Path:
    path = QUEUE / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    atomic_write_json(path, record)
    return path


def _paths(artifacts: list[Path]) -> list[str]:
    return [str(Path(a).resolve()) for a in artifacts]


def enqueue_start(*, job_id: str, paper: str, profile: str, parent_hash: str, run_name: str, params: dict,
                  start: float) -> Path:
    """Queue a running job's child run (start: seconds since the epoch)."""
    return _enqueue({"kind": "start", "job_id": job_id, "paper": paper, "profile": profile,
                     "parent_hash": parent_hash, "run_name": run_name, "params": params, "start": start})


def enqueue_job(*, job_id: str, paper: str, profile: str, parent_hash: str, run_name: str, params: dict,
                metrics: dict, provenance: dict, artifacts: list[Path], start: float, end: float) -> Path:
    """Queue what a finished job's child run shows (its start record's run, or a new one if that got lost)."""
    return _enqueue({"kind": "job", "job_id": job_id, "paper": paper, "profile": profile,
                     "parent_hash": parent_hash, "run_name": run_name, "params": params, "metrics": metrics,
                     "provenance": provenance, "artifacts": _paths(artifacts), "start": start, "end": end})


def enqueue_failed(*, job_id: str, paper: str, profile: str, parent_hash: str, run_name: str, params: dict,
                   error: str, start: float, end: float) -> Path:
    """Queue the end of a job that raised: its run is marked FAILED, with the error as a tag."""
    return _enqueue({"kind": "failed", "job_id": job_id, "paper": paper, "profile": profile,
                     "parent_hash": parent_hash, "run_name": run_name, "params": params, "error": error,
                     "start": start, "end": end})


def enqueue_report(*, paper: str, profile: str, parent_hash: str, metrics: dict, tags: dict,
                   artifacts: list[Path], end: float) -> Path:
    """Queue what the parent run shows once the report exists: effects, verdicts, the report."""
    return _enqueue({"kind": "report", "paper": paper, "profile": profile, "parent_hash": parent_hash,
                     "metrics": metrics, "tags": tags, "artifacts": _paths(artifacts), "end": end})
