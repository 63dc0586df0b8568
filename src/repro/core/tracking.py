"""MLflow: an experiment per paper, a parent run per (paper, profile, params hash), a child run per job.

Jobs queue records (`repro.core.mlqueue`: start, job, failed, report); one flusher process logs them
while the workflow runs. Snakemake's `onstart` calls `start()`: it registers the Snakemake process as
a client and spawns `python -m repro.core.tracking serve` unless a flusher already runs (and a
daemon thread of Snakemake's spawns another if that one dies). The flusher polls the queue every
second, so a job's run shows as RUNNING soon after it starts and as FINISHED soon after it ends.
`onsuccess`/`onerror` call `stop()`: it unregisters and waits until the flusher has logged every
record queued so far. The flusher ends after a last flush once no client is alive
(a Snakemake killed before its `onerror` counts as gone), marking KILLED the runs it saw start and
never end; one flusher serves two runs of the workflow at once.

Only the holder of `.repro/flusher/writer.lock` writes the store: the flusher, or `flush` (by hand, or
`stop()` when the flusher died). It is an flock, which the kernel releases when its holder dies, so
a stale pid never blocks anyone. Logging is idempotent: a job's run is found by its `repro.job_id`
tag before one is created, so a record logged again after a flush was killed midway (between
`create_run` and the end of its logging) completes that run instead of making a second. A record that
fails to log stays queued; the flusher tries it again later, and `stop()` prints what still failed.

The store defaults to the embedded sqlite file `mlflow.db` at the repo root; `MLFLOW_TRACKING_URI`
overrides it (a shared server).

    python -m repro.core.tracking flush    # log the queue by hand (a no-op while a flusher runs)
"""
from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from repro.core.config import REPO_ROOT
from repro.core.io import atomic_write_json, read_json
from repro.core.mlqueue import STATE

NOT_IN_A_NAME = re.compile(r"[^\w.: -]")  # MLflow's names: alphanumerics, _ . : - space (and / as a path)
PARENT_TAG = "repro.parent"
JOB_TAG = "repro.job_id"
POLL_S = 1.0          # the flusher's queue poll: a run appears within about a second of its record
RETRY_S = 30.0        # a record that failed to log is tried again after this long
WATCH_S = 10.0        # how often a workflow checks that its flusher still runs
RESTARTS = 3          # flusher restarts per workflow run
STOP_WAIT_S = 300.0   # stop() gives up waiting for the flusher's last flush after this long
READY_WAIT_S = 60.0   # `flush` waits this long for a starting flusher to create the store


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def _flatten(obj, prefix: str = "") -> dict:
    """{dotted key: value} of a nested dict; characters MLflow refuses in a name (brackets, slashes,
    e.g. `batch_units (A/A seeds)`) become `_`, so one odd key cannot keep a whole run out."""
    flat = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flat.update(_flatten(value, prefix + NOT_IN_A_NAME.sub("_", str(key)) + "."))
    else:
        flat[prefix[:-1]] = obj
    return flat


def numeric(metrics: dict) -> dict[str, float]:
    """The numbers of a nested metrics dict, by dotted key (MLflow metrics are floats)."""
    return {k: float(v) for k, v in _flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --- logging records to the store --------------------------------------------------------------

def _artifact_root(paper: str) -> str | None:
    """A sqlite store keeps its artifacts beside it (mlartifacts/<paper>); a server chooses its own."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts" / paper).as_uri()


def _experiment_id(client, paper: str) -> str:
    exp = client.get_experiment_by_name(paper)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(paper, artifact_location=_artifact_root(paper))


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


def job_run_id(client, rec: dict) -> str:
    """The child run of the record's job: found by its job id, created (RUNNING) only if none exists.
    Tags go in with `create_run` (one transaction), so a run without its job id never exists."""
    exp_id = _experiment_id(client, rec["paper"])
    found = client.search_runs([exp_id], filter_string=f"tags.`{JOB_TAG}` = '{rec['job_id']}'", max_results=1)
    if found:
        return found[0].info.run_id
    parent = parent_run_id(client, rec["paper"], rec["profile"], rec["parent_hash"], rec["start"])
    tags = {"mlflow.parentRunId": parent, JOB_TAG: rec["job_id"], "repro.profile": rec["profile"],
            "repro.paper": rec["paper"]}
    run = client.create_run(exp_id, run_name=rec["run_name"], tags=tags, start_time=int(1000 * rec["start"]))
    return run.info.run_id


def _params(rec: dict) -> list:
    from mlflow.entities import Param

    # every job record carries the params: logging identical values again is allowed, so whichever
    # record of the job is logged first shows them
    return [Param(k, str(v)[:6000]) for k, v in _flatten(rec["params"]).items()]


def _log_start(client, rec: dict) -> str:
    run_id = job_run_id(client, rec)  # an existing run (its end already logged) keeps its status
    client.log_batch(run_id, params=_params(rec))
    return run_id


def _log_job(client, rec: dict) -> str:
    from mlflow.entities import Metric, RunTag

    run_id = job_run_id(client, rec)
    stamp = int(1000 * rec["end"])
    tags = [RunTag(f"repro.{k}", str(v)) for k, v in _flatten(rec["provenance"]).items()]
    client.log_batch(run_id, params=_params(rec), tags=tags,
                     metrics=[Metric(k, v, stamp, 0) for k, v in numeric(rec["metrics"]).items()])
    _log_artifacts(client, run_id, rec["artifacts"])
    client.set_terminated(run_id, status="FINISHED", end_time=stamp)
    return run_id


def _log_failed(client, rec: dict) -> str:
    run_id = job_run_id(client, rec)
    client.log_batch(run_id, params=_params(rec))
    client.set_tag(run_id, "repro.error", rec["error"][-5000:])
    client.set_terminated(run_id, status="FAILED", end_time=int(1000 * rec["end"]))
    return run_id


def _log_report(client, rec: dict) -> str:
    from mlflow.entities import Metric, RunTag

    parent = parent_run_id(client, rec["paper"], rec["profile"], rec["parent_hash"], rec["end"])
    stamp = int(1000 * rec["end"])
    client.log_batch(parent, metrics=[Metric(k, v, stamp, 0) for k, v in numeric(rec["metrics"]).items()],
                     tags=[RunTag(k, str(v)) for k, v in rec["tags"].items()])
    _log_artifacts(client, parent, rec["artifacts"])
    client.set_terminated(parent, end_time=stamp)
    return parent


LOGGERS = {"start": _log_start, "job": _log_job, "failed": _log_failed, "report": _log_report}


def _log_artifacts(client, run_id: str, paths: list[str]) -> None:
    for path in paths:
        if Path(path).exists():  # a later run may have replaced the folder; the numbers are logged
            client.log_artifact(run_id, path)


def _say(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", flush=True)


class Flusher:
    """Logs queued records (oldest first) and deletes each once it is logged."""

    def __init__(self, client, queue: Path):
        self.client, self.queue = client, queue
        self.logged = 0
        self.failed: dict[Path, tuple[float, str]] = {}  # record -> (next try, monotonic; error)
        self.running: set[str] = set()  # runs whose start this process logged and whose end it has not

    def log(self, path: Path) -> None:
        rec = read_json(path)
        if rec.get("kind") not in LOGGERS:
            raise ValueError(f"key 'kind': {rec.get('kind')!r} is not one of {sorted(LOGGERS)}")
        if rec["kind"] != "report":
            rec.setdefault("job_id", path.stem)  # records queued before job ids: the file names one
        run_id = LOGGERS[rec["kind"]](self.client, rec)
        if rec["kind"] == "start":
            self.running.add(run_id)
        else:
            self.running.discard(run_id)
        started = rec["kind"] == "start"
        lag = time.time() - rec["start" if started else "end"]
        _say(f"logged {rec['kind']} record of {rec.get('run_name', rec['paper'])}: {lag:.1f} s after it "
             f"{'started' if started else 'ended'} ({path.name})")

    def flush(self, retry: bool = True) -> dict:
        """One pass over the queue; `retry=False` skips records that failed less than RETRY_S ago."""
        now = time.monotonic()
        for path in sorted(self.queue.glob("*.json")) if self.queue.is_dir() else []:
            if not retry and self.failed.get(path, (0.0, ""))[0] > now:
                continue
            try:
                self.log(path)
            except Exception as exc:  # noqa: BLE001 -- any failure leaves the record queued for a later try
                self.failed[path] = (now + RETRY_S, f"{type(exc).__name__}: {exc}")
                _say(f"{path}: not logged ({type(exc).__name__}: {exc}); it stays queued")
                continue
            self.failed.pop(path, None)
            path.unlink(missing_ok=True)
            self.logged += 1
        self.failed = {p: v for p, v in self.failed.items() if p.exists()}
        return {"logged": self.logged, "failed": {str(p): e for p, (_, e) in sorted(self.failed.items())}}

    def end_orphans(self) -> None:
        """The workflow is over: runs still RUNNING lost their job (killed with its Snakemake)."""
        for run_id in sorted(self.running):
            try:
                if self.client.get_run(run_id).info.status == "RUNNING":
                    self.client.set_tag(run_id, "repro.error", "its job never queued an end record (killed?)")
                    self.client.set_terminated(run_id, status="KILLED")
                    _say(f"run {run_id}: its job never ended, marked KILLED")
            except Exception as exc:  # noqa: BLE001 -- cosmetic: the records are what matters
                _say(f"run {run_id}: could not mark it KILLED ({type(exc).__name__}: {exc})")
        self.running.clear()


def _client():
    """An MLflow client whose store exists (creating a sqlite store's schema here, in the writer)."""
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri())
    client.search_experiments(max_results=1)
    return client


# --- one writer: the lock, the clients, the flusher ----------------------------------------------

def _paths(state: Path) -> dict[str, Path]:
    base = state / "flusher"
    return {"lock": base / "writer.lock", "ready": base / "ready", "log": base / "flusher.log",
            "clients": base / "clients", "requests": base / "requests", "responses": base / "responses",
            "queue": state / "mlflow-queue"}


def _lock(state: Path) -> int | None:
    """Take the writer lock (an fd; close it to release), or None while another process holds it."""
    path = _paths(state)["lock"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who writes, for `flush`'s message (the lock is the truth)
    return fd


def _holder(state: Path) -> str:
    try:
        return _paths(state)["lock"].read_text().strip()
    except OSError:
        return "?"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process (Linux /proc), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def _alive(client: dict) -> bool:
    """A registered Snakemake process still runs: same pid and, where /proc tells, same start time
    (a reused pid is another process) and not a zombie."""
    try:
        os.kill(client["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if client.get("started") is None:
        return True
    stat = _proc_stat(client["pid"])
    return stat is not None and stat[0] != "Z" and stat[1] == client["started"]


def _register(state: Path, pid: int) -> None:
    stat = _proc_stat(pid)
    atomic_write_json(_paths(state)["clients"] / f"{pid}.json", {"pid": pid, "started": stat and stat[1]})


def live_clients(state: Path = STATE) -> list[int]:
    """Pids of the workflow runs the flusher serves; forgets those that died without `stop()`."""
    live = []
    folder = _paths(state)["clients"]
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            client = read_json(path)
            alive = _alive(client)
        except (OSError, ValueError, KeyError, TypeError):
            alive = False  # unreadable: not a client anyone can stop
        if alive:
            live.append(client["pid"])
        else:
            path.unlink(missing_ok=True)
    return live


def _spawn(state: Path) -> None:
    log = _paths(state)["log"]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    with open(log, "a") as out:
        # its own session: a Ctrl-C in the terminal reaches Snakemake, not the flusher, which then
        # sees its client gone and does its last flush; no inherited stdout: whoever reads
        # Snakemake's output (a pipe) sees EOF when Snakemake exits, not when the flusher does
        subprocess.Popen([sys.executable, "-m", "repro.core.tracking", "serve", "--state-dir", str(state)],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                         cwd=REPO_ROOT, start_new_session=True)


def ensure_flusher(state: Path = STATE) -> bool:
    """Start a flusher unless a process holds the writer lock; True if one was started."""
    fd = _lock(state)
    if fd is None:
        return False
    os.close(fd)  # the new flusher takes it; if another process wins the race, that one writes
    _spawn(state)
    return True


def start(state: Path = STATE) -> None:
    """Snakemake's onstart: this process becomes a client of the (possibly new) flusher, and a
    daemon thread (it never delays Snakemake's exit) starts another if the flusher dies."""
    _register(state, os.getpid())
    ensure_flusher(state)
    threading.Thread(target=_watch, args=(state, os.getpid()), daemon=True, name="mlflow-flusher-watch").start()


def _watch(state: Path, pid: int) -> None:
    registered = _paths(state)["clients"] / f"{pid}.json"
    for _ in range(RESTARTS):  # a flusher that keeps dying (a broken store) is not restarted forever
        while True:
            time.sleep(WATCH_S)
            if not registered.exists():
                return  # stop() ran
            if ensure_flusher(state):
                print(f"MLflow: the flusher had stopped; started another (see {_paths(state)['log']})", flush=True)
                break


def _write_ready(state: Path) -> None:
    atomic_write_json(_paths(state)["ready"], {"pid": os.getpid()})


def serve(state: Path = STATE, poll: float = POLL_S) -> None:
    """The flusher: logs the queue until no client is alive, then a last flush, and exits."""
    p = _paths(state)
    fd = _lock(state)
    if fd is None:
        _say(f"another process (pid {_holder(state)}) writes the store; it logs the queue")
        return
    try:
        client = _client()  # at full priority: the first jobs' records wait for this (3-8 s)
        _write_ready(state)
        os.nice(10)  # then the jobs first (timing jobs above all): logging a record costs ~0.1 s of CPU
        flusher = Flusher(client, p["queue"])
        _say(f"flusher {os.getpid()} logging {p['queue']} to {tracking_uri()}")
        while True:
            requests = sorted(p["requests"].glob("*.json")) if p["requests"].is_dir() else []
            final = not live_clients(state)
            result = flusher.flush(retry=bool(requests) or final)
            if final:
                flusher.end_orphans()
            for request in requests:  # every record queued before the request is in this pass
                atomic_write_json(p["responses"] / request.name, result)
                request.unlink(missing_ok=True)
            if final:
                p["ready"].unlink(missing_ok=True)
                os.close(fd)
                # a run that registered after the check above saw the lock held and started no
                # flusher: serve it too (if another process took the lock meanwhile, that one does)
                fd = _lock(state) if live_clients(state) else None
                if fd is None:
                    _say(f"flusher {os.getpid()}: no workflow left, {flusher.logged} record(s) logged; exiting")
                    return
                _write_ready(state)
            time.sleep(poll)
    finally:
        if fd is not None:
            p["ready"].unlink(missing_ok=True)
            os.close(fd)


def flush_locked(state: Path = STATE) -> dict | None:
    """Log the whole queue in this process if no other process writes the store; None if one does.
    Afterwards, a live client without a flusher (it started while this held the lock) gets one."""
    fd = _lock(state)
    if fd is None:
        return None
    try:
        queue = _paths(state)["queue"]
        queued = queue.is_dir() and any(queue.glob("*.json"))  # nothing queued: no MLflow import
        result = Flusher(_client(), queue).flush() if queued else {"logged": 0, "failed": {}}
    finally:
        os.close(fd)
    if live_clients(state):
        ensure_flusher(state)
    return result


def _summary(result: dict) -> str:
    lines = [f"MLflow: {result['logged']} record(s) logged to {tracking_uri()}"]
    if result["failed"]:
        lines += [f"MLflow: {len(result['failed'])} record(s) could not be logged and stay queued "
                  "(`python -m repro.core.tracking flush` tries again):"]
        lines += [f"  {name}: {error}" for name, error in result["failed"].items()]
    return "\n".join(lines)


def stop(state: Path = STATE, timeout: float = STOP_WAIT_S) -> str:
    """Snakemake's onsuccess/onerror: unregister; return (a summary) once every record queued so far
    is logged, by the flusher's next pass, or here when no flusher runs (it died)."""
    p = _paths(state)
    pid = os.getpid()
    (p["clients"] / f"{pid}.json").unlink(missing_ok=True)
    name = f"{pid}-{time.time_ns()}.json"
    request, response = p["requests"] / name, p["responses"] / name
    atomic_write_json(request, {"pid": pid})
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                result = None if response.exists() else flush_locked(state)
            except Exception as exc:  # noqa: BLE001 -- a broken store must not fail a finished workflow
                return f"MLflow: could not log the queue ({type(exc).__name__}: {exc}); the records stay queued"
            if response.exists():  # the flusher's last pass (it may have ended just before flush_locked)
                result = read_json(response)
            if result is not None:  # answered, or no flusher held the store and this process logged it
                return _summary(result)
            time.sleep(0.2)
        return (f"MLflow: no answer from the flusher (pid {_holder(state)}) in {timeout:.0f} s; queued records "
                f"stay queued (see {p['log']})")
    finally:
        request.unlink(missing_ok=True)
        response.unlink(missing_ok=True)


def flush(state: Path = STATE) -> str:
    """`python -m repro.core.tracking flush`: log the queue, unless a workflow's flusher does; then
    wait until that flusher has created the store (so `mlflow ui` never races it on a new schema)."""
    result = flush_locked(state)
    if result is not None:
        return _summary(result)
    ready, deadline = _paths(state)["ready"], time.monotonic() + READY_WAIT_S
    while time.monotonic() < deadline:
        try:
            if str(read_json(ready)["pid"]) == _holder(state):
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    return f"MLflow: a running workflow's flusher (pid {_holder(state)}) logs the queue; nothing to do here"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Log the queued MLflow records (flush by hand; serve: the "
                                     "workflow's flusher)")
    parser.add_argument("command", choices=["flush", "serve"])
    parser.add_argument("--state-dir", type=Path, default=STATE, help="holds mlflow-queue/ and flusher/ "
                        "(default: .repro at the repo root)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.state_dir)
        return
    summary = flush(args.state_dir)
    print(summary)
    if "could not be logged" in summary:
        sys.exit(1)


if __name__ == "__main__":
    main()
