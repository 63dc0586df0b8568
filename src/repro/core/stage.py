"""The frame around every pipeline job: arguments, seeding, atomic outputs, metrics.json, MLflow.

A stage module defines `run(ctx) -> dict of metrics` and ends with `main(run)`. The rule passes which
params sections the job reads (the same ones it declares as `params:`, so editing another section
never re-runs it), the seed, the threads, the declared inputs and the output directory.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from repro.core import config as cfg
from repro.core import integrity, mlqueue
from repro.core.io import atomic_dir
from repro.core.provenance import process_age, provenance, write_metrics


@dataclass
class StageContext:
    paper: str
    stage: str
    profile: str
    params: dict
    seed: int
    threads: int
    out: Path
    inputs: dict[str, Path]
    wildcards: dict[str, str]


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--{what} expects name=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paper", required=True)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--profile", required=True, choices=cfg.PROFILES)
    parser.add_argument("--params", help="params file (default params/<paper>.yaml)")
    parser.add_argument("--sections", required=True, help="comma-separated sections this job reads")
    parser.add_argument("--params-sha", help="hash of those sections as Snakemake validated them: the job "
                        "stops if the file changed since (omit when running a stage by hand)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seed-offset", type=int, default=0, help="added to every training seed of the "
                        "section (a replication on disjoint seeds, params/config.yaml seed_offset)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--input", action="append", default=[], help="name=path, repeatable")
    parser.add_argument("--wildcard", action="append", default=[], help="name=value, repeatable")
    parser.add_argument("--no-tracking", action="store_true")
    return parser.parse_args(argv)


def main(run: Callable[[StageContext], dict], argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    all_params = cfg.load_paper(args.paper, args.params)  # validated before any work starts
    section = cfg.shift_seeds(all_params[args.profile], args.seed_offset)
    params = cfg.select(section, [s for s in args.sections.split(",") if s])
    if args.params_sha and cfg.params_hash(params) != args.params_sha:
        raise SystemExit(f"{args.params or f'params/{args.paper}.yaml'}: sections {args.sections} of profile "
                         f"{args.profile} changed after Snakemake scheduled this job (hash {cfg.params_hash(params)}, "
                         f"scheduled {args.params_sha}); run snakemake again so every job reads one version")
    wildcards = _pairs(args.wildcard, "wildcard")
    inputs = {k: Path(v) for k, v in _pairs(args.input, "input").items()}
    for name, path in inputs.items():
        if not path.exists():
            raise SystemExit(f"input {name}={path} does not exist")
        if path.is_dir() and (path / integrity.METRICS).exists():
            try:  # before any work: a damaged checkpoint is named here, not deep inside a loader
                integrity.verify(path)
            except integrity.IntegrityError as err:
                raise SystemExit(f"input {name}={path} does not match what its job recorded:\n{err}") from None
    from repro.core.seeding import seed_everything

    seed_everything(args.seed, args.threads)
    job_hash = cfg.params_hash({"params": params, "seed": args.seed, "wildcards": wildcards})
    startup = process_age()
    started = time.time()
    start = time.perf_counter()
    # queued, not logged: importing MLflow would double a job's start-up. The start record shows the
    # job as a RUNNING run; its end record (finished or failed) updates the same run.
    job = None if args.no_tracking else {
        "job_id": mlqueue.new_job_id(), "paper": args.paper, "profile": args.profile,
        "parent_hash": cfg.parent_hash(section, args.seed),
        "run_name": args.stage + "".join(f"[{k}={v}]" for k, v in sorted(wildcards.items())),
        "params": {**params, "seed": args.seed, **wildcards}}
    if job:
        mlqueue.enqueue_start(**job, start=started)
    try:
        with atomic_dir(args.out) as scratch:
            ctx = StageContext(args.paper, args.stage, args.profile, params, args.seed, args.threads,
                               scratch, inputs, wildcards)
            metrics = run(ctx)
            prov = provenance(paper=args.paper, stage=args.stage, profile=args.profile,
                              params_hash=job_hash, seed=args.seed, threads=args.threads,
                              wall_s=time.perf_counter() - start, startup_s=startup, inputs=inputs,
                              outputs=integrity.record(scratch))
            write_metrics(scratch / "metrics.json", metrics, prov)
            # small artifacts for MLflow: metrics.json and the figures and tables at the folder's top
            # (checkpoints stay in results/ and DVC)
            artifacts = [scratch / "metrics.json", *scratch.glob("*.png"), *scratch.glob("*.md")]
    except BaseException as exc:
        if job:
            mlqueue.enqueue_failed(**job, error=f"{type(exc).__name__}: {exc}", start=started, end=time.time())
        raise
    if job:
        mlqueue.enqueue_job(**job, metrics=metrics, provenance=prov, start=started, end=time.time(),
                            artifacts=sorted(args.out / a.relative_to(scratch) for a in artifacts))
    print(f"[{args.paper}:{args.stage}] done in {time.perf_counter() - start:.1f}s -> {args.out}",
          file=sys.stderr)
