"""`dvc add` chosen results and push them to the default DVC remote; list what was versioned."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from repro.core.io import atomic_write_json, sha256_path


def dvc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], check=True)


def snapshot(targets: list[Path], out: Path) -> None:
    dirs = [t for t in targets if t.is_dir()]
    dvc("add", *map(str, dirs))
    dvc("push")
    atomic_write_json(out, {"versioned": {str(d): sha256_path(d) for d in dirs},
                            "dvc_files": [f"{d}.dvc" for d in dirs]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("targets", nargs="+", type=Path)
    args = parser.parse_args()
    snapshot(args.targets, args.out)


if __name__ == "__main__":
    main()
