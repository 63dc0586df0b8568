"""What a job wrote, by content: recorded in its metrics.json, verified before anything reads it.

Every stage records the sha256 of each file of its output folder (`provenance.outputs_sha256`) and
of the metrics block of its metrics.json (`provenance.metrics_sha256`); the stages that consume the
folder, the report and `snapshot` verify those hashes first, so a truncated or edited checkpoint, or
an edited number in metrics.json, fails with the file's name instead of deep inside a loader or in a
report (Snakemake dates directory outputs by their `.snakemake_timestamp` and cannot see it).

    python -m repro.core.integrity results/mini      # verify every job folder under a tree
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from repro.core.io import read_json, sha256_path

METRICS = "metrics.json"
# written by the frame (metrics.json: it holds the hashes) or by Snakemake after the job
NOT_CONTENT = {METRICS, ".snakemake_timestamp"}


class IntegrityError(RuntimeError):
    """A job folder whose files no longer match what its job recorded."""


def content_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in NOT_CONTENT}


def record(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of the content a job wrote (called on its scratch folder)."""
    return {rel: sha256_path(p) for rel, p in content_files(Path(folder)).items()}


def metrics_sha256(metrics) -> str:
    """Digest of a metrics block as loaded from JSON (key order and whitespace do not count)."""
    blob = json.dumps(metrics, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def problems(folder: Path) -> list[str]:
    """Every way `folder` differs from its metrics.json record (empty: intact)."""
    folder = Path(folder)
    metrics = folder / METRICS
    if not metrics.exists():
        return [f"{folder}: no {METRICS} (not written by a finished job)"]
    try:
        data = read_json(metrics)
    except ValueError as exc:
        return [f"{metrics}: not valid JSON ({exc}): truncated or damaged after its job wrote it; re-run its "
                "rule or restore it with dvc pull"]
    try:
        recorded = data["provenance"]["outputs_sha256"]
        recorded_metrics = data["provenance"]["metrics_sha256"]
        block = data["metrics"]
    except (KeyError, TypeError) as exc:
        return [f"{metrics}: no readable provenance.outputs_sha256 / metrics_sha256 or metrics ({type(exc).__name__}: "
                f"{exc}); written by an older version or damaged: re-run its rule"]
    out = []
    actual_metrics = metrics_sha256(block)
    if actual_metrics != recorded_metrics:
        out.append(f"{metrics}: metrics block sha256 {actual_metrics[:16]}... but its job recorded "
                   f"{recorded_metrics[:16]}... (provenance.metrics_sha256): a number changed after the job wrote "
                   "it (edited or damaged); re-run its rule or restore it with dvc pull")
    found = content_files(folder)
    for rel, expected in sorted(recorded.items()):
        if rel not in found:
            out.append(f"{folder / rel}: missing; its job recorded sha256 {expected[:16]}... in {metrics}")
            continue
        actual = sha256_path(found[rel])
        if actual != expected:
            out.append(f"{folder / rel}: sha256 {actual[:16]}... ({found[rel].stat().st_size} bytes) but its job "
                       f"recorded {expected[:16]}... in {metrics}: the file changed after it was written "
                       "(truncated, edited or partly restored); re-run its rule or restore it with dvc pull")
    out += [f"{folder / rel}: not written by its job (no hash in {metrics})" for rel in sorted(set(found) - set(recorded))]
    return out


def verify(folder: Path) -> dict[str, str]:
    """The recorded hashes of an intact job folder; IntegrityError naming each bad file otherwise."""
    bad = problems(folder)
    if bad:
        raise IntegrityError("\n".join(bad))
    return read_json(Path(folder) / METRICS)["provenance"]["outputs_sha256"]


def content_hash(path: Path) -> str:
    """Identity of an input by content only: a job folder's recorded file hashes plus its metrics
    (not its provenance: finish time and wall time differ between identical runs); a plain file's
    sha256. Call after `verify`."""
    path = Path(path)
    if not (path / METRICS).exists():
        return sha256_path(path)
    data = read_json(path / METRICS)
    blob = json.dumps({"files": data["provenance"]["outputs_sha256"], "metrics": data["metrics"]},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def job_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob(METRICS) if not p.parent.name.endswith(".partial"))


def check_trees(roots: list[Path]) -> tuple[int, list[str]]:
    """(number of job folders under `roots`, every problem in them)."""
    folders = [f for root in roots for f in job_folders(root)]
    return len(folders), [line for f in folders for line in problems(f)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Verify job folders against their recorded hashes.")
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args(argv)
    count, bad = check_trees(args.roots)
    for line in bad:
        print(line, file=sys.stderr)
    print(f"{count} job folders under {', '.join(map(str, args.roots))}: "
          f"{'all intact' if not bad else f'{len(bad)} problem(s)'}")
    if bad or not count:
        sys.exit(1)


if __name__ == "__main__":
    main()
