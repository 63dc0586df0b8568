"""MLflow tracking: jobs queue records, one flusher logs them while the workflow runs.

A job's run is RUNNING from its start record and FINISHED (or FAILED) by its end record, one run
per job even when a flush is killed between `create_run` and the end of its logging; the flusher
logs records within seconds, serves two workflow runs at once, ends after a last flush once its
clients are gone, is replaced when it dies, and never holds its starter's output open."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from repro.core import mlqueue, tracking

JOB = {"paper": "pruninginfersim", "profile": "smoke", "parent_hash": "p0", "params": {"train": {"lr": 0.1}, "seed": 0}}


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A store and a queue of our own: jobs (mlqueue) and the flusher (its --state-dir) agree on them."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    monkeypatch.setattr(mlqueue, "QUEUE", tmp_path / "state" / "mlflow-queue")
    return tmp_path / "state"


def client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking.tracking_uri())


def job_runs(job_id: str) -> list:
    exp = client().get_experiment_by_name(JOB["paper"])
    if exp is None:
        return []
    return client().search_runs([exp.experiment_id], f"tags.`repro.job_id` = '{job_id}'", max_results=100)


def start(job_id, name="train"):
    return mlqueue.enqueue_start(job_id=job_id, run_name=name, start=time.time(), **JOB)


def finish(job_id, name="train", artifacts=()):
    return mlqueue.enqueue_job(job_id=job_id, run_name=name, metrics={"loss": 1.5, "nested (A/A)": {"n": 2}},
                               provenance={"seed": 0, "git_commit": "abc"}, artifacts=list(artifacts),
                               start=time.time() - 2, end=time.time(), **JOB)


def wait_for(predicate, timeout=30.0, what="condition"):
    """Seconds until `predicate()` holds (fails after `timeout`)."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - t0


def status(job_id):
    runs = job_runs(job_id)
    return runs[0].info.status if len(runs) == 1 else None


def writer_free(state) -> bool:
    fd = tracking._lock(state)
    if fd is None:
        return False
    os.close(fd)
    return True


def flusher_pid(state) -> int:
    wait_for(lambda: (state / "flusher" / "ready").exists(), what="the flusher creates the store")
    return json.loads((state / "flusher" / "ready").read_text())["pid"]


# --- logging records (in this process) ------------------------------------------------------------

def test_a_job_runs_then_finishes_or_fails_in_one_child_run_of_its_parent(state, tmp_path):
    (tmp_path / "fig.png").write_bytes(b"\x89PNG")
    start("a")
    assert "1 record(s) logged" in tracking.flush(state)
    (run,) = job_runs("a")
    assert run.info.status == "RUNNING" and run.data.params == {"train.lr": "0.1", "seed": "0"}
    finish("a", artifacts=[tmp_path / "fig.png"])
    tracking.flush(state)
    (done,) = job_runs("a")
    assert done.info.run_id == run.info.run_id and done.info.status == "FINISHED"
    # a key MLflow refuses (brackets, a slash) is logged under a name it accepts, not dropped with the run
    assert done.data.metrics == {"loss": 1.5, "nested _A_A_.n": 2.0} and done.data.tags["repro.git_commit"] == "abc"
    assert [a.path for a in client().list_artifacts(done.info.run_id)] == ["fig.png"]
    start("b", "prune")
    mlqueue.enqueue_failed(job_id="b", run_name="prune", error="ValueError: boom", start=time.time(),
                           end=time.time(), **JOB)
    tracking.flush(state)
    (failed,) = job_runs("b")
    assert failed.info.status == "FAILED" and failed.data.tags["repro.error"] == "ValueError: boom"
    parent = done.data.tags["mlflow.parentRunId"]
    assert failed.data.tags["mlflow.parentRunId"] == parent
    mlqueue.enqueue_report(paper=JOB["paper"], profile="smoke", parent_hash="p0", metrics={"P1.0.x": {"value": 0.5}},
                           tags={"verdict.P1": "reproduced"}, artifacts=[], end=time.time())
    tracking.flush(state)
    report = client().get_run(parent)
    assert report.info.status == "FINISHED" and report.data.tags["verdict.P1"] == "reproduced"
    assert not list(mlqueue.QUEUE.glob("*.json"))


def test_a_record_that_cannot_be_logged_stays_queued_and_is_named(state):
    bad = mlqueue._enqueue({"kind": "jobb", "paper": "x"})
    summary = tracking.flush(state)
    assert bad.exists() and f"{bad}: ValueError: key 'kind': 'jobb' is not one of" in summary
    with pytest.raises(SystemExit):
        tracking.main(["flush", "--state-dir", str(state)])


KILL_AT_LOG_BATCH = """
import os, signal, sys
from pathlib import Path
import mlflow
from repro.core import tracking
def die(*args, **kwargs):  # the run exists (create_run returned); nothing of the record is logged yet
    os.kill(os.getpid(), signal.SIGKILL)
mlflow.MlflowClient.log_batch = die
tracking.flush(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("first", ["start", "job"])
def test_a_flush_killed_after_create_run_leaves_no_second_run(state, first):
    """SIGKILL between create_run and the end of logging, then the next flush: still one run per job,
    and it is complete."""
    (start if first == "start" else finish)("k")
    proc = subprocess.run([sys.executable, "-c", KILL_AT_LOG_BATCH, str(state)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tracking.REPO_ROOT / "src")})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (half,) = job_runs("k")  # created, nothing logged, its record still queued
    assert half.data.params == {} and len(list(mlqueue.QUEUE.glob("*.json"))) == 1
    if first == "start":
        finish("k")
    tracking.flush(state)
    (run,) = job_runs("k")
    assert run.info.run_id == half.info.run_id and run.info.status == "FINISHED"
    assert run.data.params == {"train.lr": "0.1", "seed": "0"} and run.data.metrics["loss"] == 1.5
    exp = client().get_experiment_by_name(JOB["paper"]).experiment_id
    assert len(client().search_runs([exp], "tags.`repro.parent` = 'true'")) == 1


def test_stale_client_and_lock_files_block_nothing(state):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tracking._register(state, dead.pid)
    (state / "flusher" / "writer.lock").write_text(f"{dead.pid}\n")  # left by a flusher killed with -9
    assert tracking.live_clients(state) == [] and not (state / "flusher" / "clients" / f"{dead.pid}.json").exists()
    assert writer_free(state)


# --- the flusher process --------------------------------------------------------------------------

def test_the_flusher_logs_while_the_workflow_runs_serves_two_runs_and_ends_with_the_last(state):
    tracking.start(state)
    other = subprocess.Popen(["sleep", "120"])  # a second workflow run, started meanwhile
    try:
        tracking._register(state, other.pid)
        pid = flusher_pid(state)
        assert "logs the queue; nothing to do here" in tracking.flush(state)  # `make ui` during a run
        start("live")
        lag_start = wait_for(lambda: status("live") == "RUNNING", 15, "the start record is logged")
        finish("live")
        lag_end = wait_for(lambda: status("live") == "FINISHED", 15, "the end record is logged")
        print(f"start record in the store after {lag_start:.2f} s, end record after {lag_end:.2f} s")
        start("orphan", "latency")  # its job is killed with the workflow: never an end record
        start("late", "evaluate")
        assert "record(s) logged" in tracking.stop(state)  # this run ends; every record it queued is in
        assert status("late") == "RUNNING" and not writer_free(state)  # the other run keeps the flusher
        finish("late", "evaluate")
        wait_for(lambda: status("late") == "FINISHED", 15, "logged while the other run lasts")
    finally:
        other.kill()
        other.wait()
    wait_for(lambda: writer_free(state), 20, "the flusher exits once no run is left")
    assert f"flusher {pid}: no workflow left" in (state / "flusher" / "flusher.log").read_text()
    assert status("orphan") == "KILLED" and not list(mlqueue.QUEUE.glob("*.json"))
    assert all(len(job_runs(j)) == 1 for j in ("live", "orphan", "late"))


def test_a_dead_flusher_is_replaced_or_its_queue_logged_by_stop(state, monkeypatch):
    monkeypatch.setattr(tracking, "WATCH_S", 0.5)
    tracking.start(state)
    first = flusher_pid(state)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: (state / "flusher" / "ready").exists() and flusher_pid(state) != first, 30,
             "the workflow starts another flusher")
    start("after")
    wait_for(lambda: status("after") == "RUNNING", 15, "the new flusher logs live")
    # no flusher and no watch (the client file is its signal to stop), then the run ends: stop()
    # logs what is queued itself
    (state / "flusher" / "clients" / f"{os.getpid()}.json").unlink()
    for watch in [t for t in threading.enumerate() if t.name == "mlflow-flusher-watch"]:
        watch.join(timeout=10)
    wait_for(lambda: writer_free(state), 20, "the flusher exits without clients")
    tracking._register(state, os.getpid())
    finish("after")
    summary = tracking.stop(state)
    assert "1 record(s) logged" in summary and status("after") == "FINISHED"


def test_starting_the_flusher_does_not_hold_the_callers_output_open(state):
    """Snakemake's output read through a pipe ends when Snakemake does, not when its flusher does;
    the flusher then sees its clients gone (as after a kill -9 before onerror) and exits by itself."""
    other = subprocess.Popen(["sleep", "120"])  # keeps the flusher alive after its starter exits
    try:
        tracking._register(state, other.pid)
        script = f"from pathlib import Path; from repro.core import tracking; tracking.start(Path({str(state)!r}))"
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=True)
        assert time.monotonic() - t0 < 15
        flusher_pid(state)
        assert not writer_free(state)  # the flusher outlived the process that started it
    finally:
        other.kill()
        other.wait()
    wait_for(lambda: writer_free(state), 30, "the flusher exits when its clients are gone")
    assert "no workflow left" in (state / "flusher" / "flusher.log").read_text()


def test_the_default_store_and_queue_are_in_the_checkout():
    assert mlqueue.QUEUE == tracking.REPO_ROOT / ".repro" / "mlflow-queue"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-c", "from repro.core import tracking; print(tracking.tracking_uri(), "
                          "tracking._artifact_root('p'))"], env=env, capture_output=True, text=True, check=True)
    root = tracking.REPO_ROOT
    assert out.stdout.split() == [f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts" / "p").as_uri()]


def test_jobs_never_import_mlflow(tmp_path):
    """The stage frame queues records; MLflow (2-3 s of imports) stays out of every job."""
    script = textwrap.dedent(f"""
        import sys
        from repro.core import mlqueue
        from repro.core.stage import main
        mlqueue.QUEUE = __import__("pathlib").Path({str(tmp_path / 'queue')!r})
        main(lambda ctx: {{"x": 1}}, ["--paper", "pruninginfersim", "--stage", "unit", "--profile", "smoke",
             "--sections", "train", "--seed", "0", "--out", {str(tmp_path / 'out')!r}])
        assert "mlflow" not in sys.modules, "a job imported mlflow"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    kinds = sorted(json.loads(p.read_text())["kind"] for p in (tmp_path / "queue").glob("*.json"))
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "queue").glob("*.json"))]
    assert kinds == ["job", "start"] and records[0]["job_id"] == records[1]["job_id"]
