"""Who is running a run: the owner tokens of run leases, and whether their process lives.

Several ``normscope run`` / ``reproduce`` processes may work on one store at once. Before
a driver executes a run it *leases* it in the store (table ``leases``, written in the
same transaction that checks the plan), and the lease goes away in the transaction that
stores the run's result. Another driver skips a run leased by a live process and waits
for its result instead of computing it again; a lease whose process has died (killed,
crashed) is stale and is taken over.

An owner token is ``host:pid:start:nonce``: the process's start time (clock ticks since
boot, from ``/proc``) tells a live process from a later one that reuses its pid, and the
nonce tells apart two drivers in one process. SQLite's WAL mode, which the store uses,
only works for processes on one machine, so a lease written on another host cannot
belong to a live writer of this file and counts as stale.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

HOST = socket.gethostname()


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` ("" where /proc is missing), or None when it
    has exited or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ""
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def new_owner() -> str:
    """A fresh owner token for this process."""
    start = _start_time(os.getpid()) or ""
    return f"{HOST}:{os.getpid()}:{start}:{secrets.token_hex(4)}"


def alive(owner: str) -> bool:
    """Whether the process that wrote ``owner`` is still running."""
    try:
        host, pid_text, start, _ = owner.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != HOST:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = _start_time(pid)
    return now is not None and (not start or not now or now == start)


def describe(owner: str) -> str:
    """``"pid 1234 on host"`` for messages."""
    parts = owner.rsplit(":", 3)
    return f"pid {parts[1]} on {parts[0]}" if len(parts) == 4 else owner
