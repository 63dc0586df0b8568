"""The warm server (repro.core.warm): a job forked from it behaves as the same job run cold (output,
exit status, metrics to the digit); anything it cannot serve runs cold; a killed client stops its job."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.core import warm
from repro.core.config import REPO_ROOT

JOB = '''
import os, sys, time
print("pid", os.getpid(), "ppid", os.getppid(), "cwd", os.getcwd(), "tag", os.environ.get("TAG"), flush=True)
print("stdin", sys.stdin.read().strip(), flush=True)
print("project modules", sorted(m for m in sys.modules if m.split(".")[0] == "repro"), flush=True)
if "--sleep" in sys.argv:
    open(sys.argv[-1], "w").write(str(os.getpid()))
    time.sleep(60)
if "--raise" in sys.argv:
    raise ValueError("broken job")
sys.exit(int(sys.argv[1]))
'''


def _env(tmp_path, **extra):
    path = os.pathsep.join([str(tmp_path / "mods"), str(REPO_ROOT / "src")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0", **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server started as Snakemake's onstart starts it (this process is its parent)."""
    tmp = tmp_path_factory.mktemp("warm")
    (tmp / "mods").mkdir()
    (tmp / "mods" / "warmjob.py").write_text(JOB)
    sock = tmp / "s.sock"
    saved = dict(os.environ)
    warm.start(sock, {k: v for k, v in _env(tmp).items() if k in ("PYTHONPATH", "PYTHONHASHSEED")},
               log=tmp / "warm.log")
    os.environ.clear()
    os.environ.update(saved)  # start() points this process's jobs at the server; the tests choose
    for _ in range(600):
        if sock.exists():
            break
        time.sleep(0.1)
    assert sock.exists(), (tmp / "warm.log").read_text()
    yield tmp, sock
    warm.stop(sock)


def _client(tmp, sock, *args, env=None, stdin="hello", **kw):
    env = env or _env(tmp, TAG="t1")
    if sock:
        env[warm.ENV] = str(sock)
    return subprocess.run([sys.executable, "-m", "repro.core.warm", "warmjob", *args], env=env, cwd=tmp,
                          input=stdin, capture_output=True, text=True, timeout=120, **kw)


def _server_pid(sock: Path) -> int:
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--serve" in argv and str(sock).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no warm server for {sock}")


def _gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _pid(out: str) -> tuple[int, int]:
    words = out.split()
    return int(words[words.index("pid") + 1]), int(words[words.index("ppid") + 1])


def test_forked_job_gets_the_clients_stdio_cwd_env_and_returns_its_status(server):
    tmp, sock = server
    proc = _client(tmp, sock, "3")
    assert proc.returncode == 3, proc.stderr
    pid, ppid = _pid(proc.stdout)
    assert ppid == _server_pid(sock)  # ran in a fork of the server, not in the client
    assert f"cwd {tmp}" in proc.stdout and "tag t1" in proc.stdout and "stdin hello" in proc.stdout
    assert "project modules []" in proc.stdout  # the job reads the project's code afresh
    assert _client(tmp, sock, "0").returncode == 0


def test_job_error_is_a_traceback_and_status_1(server):
    tmp, sock = server
    proc = _client(tmp, sock, "0", "--raise")
    assert proc.returncode == 1 and "ValueError: broken job" in proc.stderr


def test_different_start_up_environment_runs_cold(server):
    tmp, sock = server
    proc = _client(tmp, sock, "0", env=_env(tmp, PYTHONHASHSEED="7"))
    assert proc.returncode == 0
    assert "PYTHONHASHSEED differ(s) from the warm server's: running cold" in proc.stderr
    assert _pid(proc.stdout)[1] == os.getpid()  # the client itself ran it (its parent: this test)


def test_no_server_runs_cold(server, tmp_path):
    tmp, _ = server
    for sock in (None, tmp_path / "missing.sock"):
        proc = _client(tmp, sock, "4")
        assert proc.returncode == 4 and "stdin hello" in proc.stdout and "running cold" not in proc.stderr


def test_killed_client_stops_its_job(server):
    tmp, sock = server
    pidfile = tmp / "job.pid"
    env = {**_env(tmp), warm.ENV: str(sock)}
    client = subprocess.Popen([sys.executable, "-m", "repro.core.warm", "warmjob", "0", "--sleep", str(pidfile)],
                              env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    for _ in range(300):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    job = int(pidfile.read_text())
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=10)
    for _ in range(100):
        if _gone(job):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"job {job} still runs after its client was killed")


def _stage(tmp, sock, module, out, sections, inputs=()):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp / "mods"), str(REPO_ROOT / "src")]),
           "PYTHONHASHSEED": "0"}
    env.pop(warm.ENV, None)
    if sock:
        env[warm.ENV] = str(sock)
    argv = [sys.executable, "-m", "repro.core.warm", f"repro.papers.routing_free_moe.{module}",
            "--paper", "routing_free_moe", "--stage", module, "--profile", "smoke", "--sections", sections,
            "--seed", "0", "--threads", "1", "--out", str(out), "--no-tracking",
            *[a for k, v in inputs for a in ("--input", f"{k}={v}")], "--wildcard", "arm=rf", "--wildcard", "seed=0"]
    proc = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "running cold" not in proc.stderr
    return json.loads((out / "metrics.json").read_text())


def test_real_stage_forked_equals_cold_to_the_digit(server, tmp_path):
    tmp, sock = server
    data = _stage(tmp, None, "data", tmp_path / "data", "data")
    warm_data = _stage(tmp, sock, "data", tmp_path / "data_w", "data")
    assert warm_data["provenance"]["outputs_sha256"] == data["provenance"]["outputs_sha256"]
    cold = _stage(tmp, None, "train", tmp_path / "cold", "model,arms,train", [("data", tmp_path / "data")])
    forked = _stage(tmp, sock, "train", tmp_path / "warm", "model,arms,train", [("data", tmp_path / "data")])
    timing = {k for k in cold["metrics"] if "second" in k or k.endswith("_s")}
    assert {k: v for k, v in forked["metrics"].items() if k not in timing} == \
        {k: v for k, v in cold["metrics"].items() if k not in timing}
    assert forked["provenance"]["outputs_sha256"] == cold["provenance"]["outputs_sha256"]  # the checkpoint
    assert forked["provenance"]["startup_s"] > 0  # counted from the client's own start, not from the fork


def test_stop_ends_the_server(tmp_path):
    sock = tmp_path / "s.sock"
    saved = dict(os.environ)
    warm.start(sock, {"PYTHONHASHSEED": "0"}, log=tmp_path / "warm.log")
    os.environ.clear()
    os.environ.update(saved)
    for _ in range(600):
        if sock.exists():
            break
        time.sleep(0.1)
    server = _server_pid(sock)
    warm.stop(sock)
    for _ in range(50):
        if _gone(server):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the server still runs after stop()")
