"""A real two-node Ray cluster on this machine, started with ``ray start`` and stopped by pid.

The head (``ray start --head``) and a second node (``ray start --address``) each run in
a session of their own with ``--block``, one CPU each, token authentication, and every
port chosen free (no default port, so other Ray instances on the machine are left
alone). Stopping sends SIGTERM to each ``ray start`` process, which stops the processes
it started, then SIGKILL to whatever is left in its process group; nothing is stopped
by name. A cluster's servers listen on every interface (that is what lets nodes join);
the token keeps others out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 150.0


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    folder: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    ports = {
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
    }
    workers = ",".join(str(_free_port()) for _ in range(4))
    return [*(str(x) for kv in ports.items() for x in kv), "--worker-port-list", workers]


def _wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.5)
    raise TimeoutError(f"ray start did not report {text!r} in {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to ``ray start`` (it stops its processes), then SIGKILL to its group."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


@contextlib.contextmanager
def two_node_cluster() -> Iterator[Cluster]:
    """Start a head and a second node; yield where to reach them; stop both."""
    folder = Path(tempfile.mkdtemp(prefix="nsc-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env |= {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "TMPDIR": str(folder),
        "PYTHONPATH": str(ROOT),  # the tasks of the tests import tests.experiments
    }
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--block"]
    common += ["--disable-usage-stats", "--temp-dir", str(folder / "r")]
    gcs = _free_port()
    head = ["--head", "--port", str(gcs), "--include-dashboard", "false"]
    head += ["--ray-client-server-port", str(_free_port())]
    procs: list[subprocess.Popen] = []
    try:
        for name, args in (("head", head), ("node", ["--address", f"127.0.0.1:{gcs}"])):
            log = folder / f"{name}.log"
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        [RAY, "start", *args, *_node_ports(), *common],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            _wait_for(log, "Ray runtime started", procs[-1], START_TIMEOUT_S)
        yield Cluster(f"127.0.0.1:{gcs}", env, folder)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
