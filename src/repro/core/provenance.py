"""metrics.json = {"metrics": ..., "provenance": ...}: every number carries where it came from."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from repro.core.config import REPO_ROOT
from repro.core.integrity import content_hash, metrics_sha256
from repro.core.io import atomic_write_json

TRACKED_PACKAGES = ("torch", "transformers", "snakemake", "mlflow", "datasets", "accelerate")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit or "unknown", "git_dirty": bool(status) if status is not None else None}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()})"


PROCESS_START = "REPRO_PROCESS_START"  # set by repro.core.warm in a forked job: its client's start (epoch s)


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): read just before a job's
    run(), it is the job's start-up (interpreter, imports, params, seeding). A job forked from the
    warm server (repro.core.warm) counts from its own client process's start."""
    if PROCESS_START in os.environ:
        return time.time() - float(os.environ[PROCESS_START])
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")


def provenance(*, paper: str, stage: str, profile: str, params_hash: str, seed: int, threads: int,
               wall_s: float, startup_s: float | None, inputs: dict[str, Path], outputs: dict[str, str]) -> dict:
    """`inputs_sha256`: each input by content (integrity.content_hash, the same for identical runs);
    `outputs_sha256`: every file this job wrote, verified by whatever reads the folder next."""
    return {
        "paper": paper,
        "stage": stage,
        "profile": profile,
        "params_hash": params_hash,
        "seed": seed,
        "threads": threads,
        "wall_s": round(wall_s, 3),
        "startup_s": None if startup_s is None else round(startup_s, 3),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device_name(),
        "versions": versions(),
        "inputs_sha256": {name: content_hash(p) for name, p in sorted(inputs.items())},
        "outputs_sha256": outputs,
        **git_state(),
    }


def write_metrics(path: Path, metrics: dict, prov: dict) -> None:
    """metrics.json, with `provenance.metrics_sha256`: the digest of the metrics block as a reader loads
    it, verified wherever the output hashes are (an edited number is refused, not reported)."""
    loaded = json.loads(json.dumps(metrics, default=str))  # as written (default=str), then read back
    atomic_write_json(path, {"metrics": loaded, "provenance": {**prov, "metrics_sha256": metrics_sha256(loaded)}})
