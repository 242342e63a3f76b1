"""SIGKILL of a running sweep (the driver and its worker processes at once) loses only the
runs in flight; resuming stores every run exactly once and ends with the same table as a
sweep that was never interrupted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from normscope.experiments import Store, parse_spec, run_experiment

from .conftest import ROOT, normscope_command
from .stored import SWEEP, SWEEP_RUNS, connect_readonly, run_counts, stored_rows


def group_members(pgid: int) -> dict[int, str]:
    """Live (non-zombie) processes of process group ``pgid``: pid -> command line."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members[int(entry.name)] = cmdline
    return members


def stored_ok(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return run_counts(db).get("ok", 0)
    except sqlite3.Error:
        return 0  # the driver is still creating the schema


def start_sweep(spec: Path, db: Path) -> subprocess.Popen:
    """``normscope run SPEC --workers 2`` in a session of its own, so that one killpg
    reaches the driver, the forkserver and every worker."""
    return subprocess.Popen(
        [*normscope_command(), "run", str(spec), "--db", str(db), "--workers", "2", "-q"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_mid_sweep(proc: subprocess.Popen, db: Path) -> tuple[int, dict[int, str]]:
    """Wait until two runs are stored while workers run, then SIGKILL the whole group.
    Returns the runs stored at that moment and the processes that were killed."""
    deadline = time.time() + 90
    done, members = 0, {}
    while time.time() < deadline and proc.poll() is None:
        done = stored_ok(db)
        members = group_members(proc.pid)
        if done >= 2 and len(members) >= 3:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return done, members


def test_sigkill_of_driver_and_workers_then_resume_gives_the_uninterrupted_table(
    tmp_path, reference_rows
):
    spec, db = tmp_path / "s.toml", tmp_path / "r.db"
    spec.write_text(SWEEP)
    proc = start_sweep(spec, db)
    done, members = kill_mid_sweep(proc, db)

    # Killed while working: the driver, the forkserver and two workers were alive.
    assert 2 <= done < SWEEP_RUNS, done
    assert proc.returncode == -signal.SIGKILL
    assert len(members) >= 4, members
    deadline = time.time() + 10
    while group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not group_members(proc.pid), "a worker outlived the SIGKILL"

    # Nothing corrupt, nothing half-written: each stored run has all its measurements.
    conn = connect_readonly(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = conn.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0]
    per_run = conn.execute("SELECT count(*) FROM measurements GROUP BY run").fetchall()
    conn.close()
    assert stored >= done and all(n == 3 for (n,) in per_run) and len(per_run) == stored

    with Store(db) as store:
        resumed = run_experiment(parse_spec(SWEEP), store, spec_toml=SWEEP, workers=2, quiet=True)
    assert (resumed.skipped, resumed.ok, resumed.failed) == (stored, SWEEP_RUNS - stored, 0)

    conn = connect_readonly(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    twice = conn.execute(
        "SELECT run, step, name, count(*) FROM measurements GROUP BY run, step, name "
        "HAVING count(*) > 1"
    ).fetchall()
    conn.close()
    assert twice == []
    assert run_counts(db) == {"ok": SWEEP_RUNS}
    assert stored_rows(db) == reference_rows
