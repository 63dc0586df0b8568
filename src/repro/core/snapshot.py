"""Version a profile's results with DVC and put them back on a clean checkout.

    python -m repro.core.snapshot push --profile mini --out F results/mini/<paper> ... reports/mini
    python -m repro.core.snapshot restore --profile mini

The `.dvc` files live in `snapshots/<profile>/` (committed with git), not beside the results, so
`make clean` or `rm -rf results reports` cannot delete the record of what to restore. Every job
folder is verified against its recorded hashes before it is pushed and after it is pulled.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from repro.core import integrity
from repro.core.config import REPO_ROOT
from repro.core.io import atomic_write_json, atomic_write_text


def dvc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], check=True, cwd=REPO_ROOT)


def snapshot_dir(profile: str) -> Path:
    return REPO_ROOT / "snapshots" / profile


def verify_trees(targets: list[Path]) -> int:
    """Every job folder under the targets intact (SystemExit listing what is not); their count."""
    count, bad = integrity.check_trees(targets)
    if bad:
        raise SystemExit("results do not match their recorded hashes:\n" + "\n".join(bad))
    return count


def dvc_file(profile: str, target: Path) -> Path:
    """snapshots/<profile>/results.<paper>.dvc, snapshots/<profile>/reports.dvc"""
    rel = Path(os.path.relpath(target.resolve(), REPO_ROOT)).parts
    name = ".".join(p for p in rel if p != profile)
    return snapshot_dir(profile) / f"{name}.dvc"


def move_record(beside: Path, record: Path, target: Path) -> None:
    """Move the `.dvc` record that `dvc add target` wrote beside it to `record`, with its `outs` path
    relative to the new place (read and written as YAML: DVC quotes names YAML would misread)."""
    try:
        data = yaml.safe_load(beside.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{beside}: cannot read the record `dvc add` wrote ({exc})") from None
    outs = data.get("outs") if isinstance(data, dict) else None
    if not (isinstance(outs, list) and len(outs) == 1 and isinstance(outs[0], dict)
            and outs[0].get("path") == target.name):
        raise SystemExit(f"{beside}: key 'outs': expected one entry with path {target.name!r} (what `dvc add "
                         f"{target}` writes), found {outs!r}")
    outs[0]["path"] = os.path.relpath(target.resolve(), record.parent.resolve())
    atomic_write_text(record, yaml.safe_dump(data, sort_keys=False))
    beside.unlink()


def push(profile: str, targets: list[Path], out: Path) -> None:
    jobs = verify_trees(targets)
    files = []
    for target in targets:
        record = dvc_file(profile, target)
        if record.exists():  # a later snapshot of the same folder: new hashes, same record
            dvc("commit", "--force", str(record))
        else:  # `dvc add` writes the record beside the folder; move it where a clean keeps it
            dvc("add", str(target))
            move_record(target.with_name(target.name + ".dvc"), record, target)
        files.append(record)
    dvc("push", *map(str, files))
    atomic_write_json(out, {"job_folders_verified": jobs, "dvc_files": [str(f.relative_to(REPO_ROOT)) for f in files],
                            "restore": f"python -m repro.core.snapshot restore --profile {profile}"})


def restore(profile: str) -> None:
    """Pull the profile's snapshot, verify it, and mark it current for Snakemake (pulled files get
    new modification times, which would otherwise re-run the DAG)."""
    records = sorted(snapshot_dir(profile).glob("*.dvc"))
    if not records:
        raise SystemExit(f"{snapshot_dir(profile)}: no snapshot of profile {profile!r} (run `make snapshot "
                         f"PROFILE={profile}` first and commit snapshots/)")
    dvc("pull", *map(str, records))
    jobs = verify_trees([REPO_ROOT / "results" / profile])
    subprocess.run([sys.executable, "-m", "snakemake", "all", "--cores", "1", "--touch",
                    "--config", f"profile={profile}"], check=True, cwd=REPO_ROOT)
    print(f"restored {len(records)} snapshot folder(s) of profile {profile}: {jobs} job folders intact, "
          "marked current")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("push")
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("targets", nargs="+", type=Path)
    r = sub.add_parser("restore")
    r.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    if args.command == "push":
        push(args.profile, args.targets, args.out)
    else:
        restore(args.profile)


if __name__ == "__main__":
    main()
