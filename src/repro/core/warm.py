"""Warm start for pipeline jobs: one process per workflow run imports the heavy libraries once, and
every job runs in a fork of it instead of importing them again.

A job spends ~1.7 s starting Python and importing torch, and up to ~3.4 s more importing transformers'
model code, datasets or accelerate; over the ~440 mini jobs of the ten papers that is about a tenth
of all CPU time. Snakemake's `onstart` calls `start()`: it spawns `python -m repro.core.warm --serve`, which
imports PRELOAD (no torch operation runs, so no thread pool exists to break in a fork) and listens
on a Unix socket named in REPRO_WARM, an environment variable the jobs inherit. A job's command is
`python -m repro.core.warm <module> <args>`: this client, which imports nothing heavy, hands its
argv, working directory, environment and stdin/stdout/stderr to the server; a forked child runs
the module as `python -m` would and sends back its exit status.

Anything else runs the job cold in this process (`runpy`, as `python -m <module>`): no REPRO_WARM
(a job run by hand, a cluster node), no server listening, or an environment that differs from the
server's in a variable read at start-up (PYTHONHASHSEED, PYTHONPATH, ...), or a preloaded library
that touched CUDA. The project's code (repro.*) is imported fresh in every child, so an edit during
a run reaches the next job, as before.
A killed client closes the socket and its child terminates itself; the server exits when the
Snakemake process that started it does, or when its socket file is removed (`stop()`).
"""
from __future__ import annotations

import json
import os
import runpy
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from repro.core.provenance import PROCESS_START, process_age

ENV = "REPRO_WARM"  # the server's socket path, set for the jobs by `start()`
# imported by most jobs; transformers' model code alone takes ~3.4 s (it pulls in torch._dynamo)
PRELOAD = ["numpy", "torch", "datasets", "accelerate", "transformers",
           "transformers.models.llama.modeling_llama", "transformers.models.qwen2.modeling_qwen2"]
# read by the interpreter or by PRELOAD at import: a job whose values differ runs cold
# (Snakemake's per-job OMP_NUM_THREADS/MKL_NUM_THREADS are not: the server starts single-threaded and
# every job sets torch's threads itself, repro.core.seeding)
PINNED = ["PYTHONHASHSEED", "PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "CUDA_VISIBLE_DEVICES"]
HEADER = struct.Struct("!Q")
POLL_S = 1.0


def interpreter() -> list[str]:
    return [os.path.realpath(sys.executable), sys.prefix]  # a venv's python and python3 are one


def pinned(env, python: list[str]) -> dict:
    return {k: env.get(k) for k in PINNED} | {"python": python}


# -- client --------------------------------------------------------------------------------------

def run_cold(argv: list[str]) -> None:
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


def _connect(path: str | None) -> socket.socket | None:
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            break
        data += chunk
    return data.strip()


def client(argv: list[str]) -> int:
    """Run `python -m argv[0] argv[1:]` in a fork of the warm server; cold here when there is none.
    Returns the job's exit status."""
    started = time.time() - (process_age() or 0.0)
    sock = _connect(os.environ.get(ENV))
    if sock is None:
        run_cold(argv)
        return 0
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                          "python": interpreter(), "started": started}).encode()
    with sock:
        socket.send_fds(sock, [HEADER.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
        # Snakemake stops a job with SIGTERM (SIGINT at Ctrl-C): closing the socket stops the child too
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: os._exit(128 + signum))
        reply = _read_line(sock)
    if reply.startswith(b"refuse"):
        print(f"repro.core.warm: {reply.decode().partition(' ')[2]} differ(s) from the warm server's: "
              "running cold", file=sys.stderr)
        run_cold(argv)
        return 0
    if not reply.startswith(b"rc "):
        print(f"repro.core.warm: the job {' '.join(argv)} ended without an exit status (server gone?)",
              file=sys.stderr)
        return 1
    return int(reply.split()[1])


# -- server --------------------------------------------------------------------------------------

def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed the connection")
        data += chunk
    return data


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(conn: socket.socket, server_env: dict) -> None:
    """In the fork: take over the client's stdio, directory and environment, run the module, report."""
    header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
    request = json.loads(_recv_exact(conn, HEADER.unpack(header)[0]))
    differs = sorted(k for k, v in pinned(request["env"], request["python"]).items() if server_env[k] != v)
    import torch

    if torch.cuda._is_in_bad_fork():  # a preloaded library touched CUDA: only a fresh process may use it
        differs.append("CUDA state")
    if differs:
        for fd in fds:
            os.close(fd)
        conn.sendall(f"refuse {','.join(differs)}\n".encode())
        os._exit(0)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[PROCESS_START] = repr(request["started"])  # start-up counts from the client's start

    def watch() -> None:  # the client is gone (killed): stop, as a killed cold job would
        try:
            conn.recv(1)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
    for name in [m for m in sys.modules if m == "repro" or m.startswith("repro.")]:
        del sys.modules[name]  # the project's code (this module's imports too) is read afresh, as cold
    status = 0
    try:
        run_cold(request["argv"])
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(f"rc {status}\n".encode())
    os._exit(status)


def serve(path: str, parent: int) -> None:
    """Import PRELOAD, then fork a child per connection until `parent` exits or the socket file goes."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    server_env = pinned(os.environ, interpreter())
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    scratch = f"{path}.{os.getpid()}"
    listener.bind(scratch)
    listener.listen(64)
    os.replace(scratch, path)  # clients see the socket only once it accepts
    identity = os.stat(path).st_ino
    listener.settimeout(POLL_S)
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        try:
            if os.getppid() != parent or os.stat(path).st_ino != identity:
                return
        except FileNotFoundError:
            return
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            conn.settimeout(None)
            try:
                _child(conn, server_env)
            finally:
                os._exit(1)
        conn.close()


def start(path: Path, env: dict, log: Path) -> None:
    """Snakemake's onstart: spawn the server (jobs that start before it listens, ~6 s, run cold) and
    point the jobs at it."""
    path.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:  # the server keeps its own copy of the descriptor
        subprocess.Popen([sys.executable, "-m", "repro.core.warm", "--serve", str(path), str(os.getpid())],
                         env={**os.environ, **env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
                         stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    os.environ[ENV] = str(path)


def stop(path: Path) -> None:
    """Snakemake's onsuccess/onerror: the server sees its socket gone and exits (running jobs go on)."""
    path.unlink(missing_ok=True)
    os.environ.pop(ENV, None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(client(sys.argv[1:]))
