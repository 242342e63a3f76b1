import contextlib
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from normscope.errors import StoreError
from normscope.experiments.execute import Row, RunResult
from normscope.experiments.store import Store


def result(run_hash="abc", status="ok", rows=None, error=None):
    return RunResult(
        hash=run_hash,
        status=status,
        config={"subject": {"net": {"width": 4}}},
        rows=rows if rows is not None else [Row(0, "loss", "loss", 1.5, {"acc": 0.5})],
        started="t0",
        finished="t1",
        seconds=0.1,
        host="h",
        versions={"torch": "x"},
        error=error,
        traceback="Traceback ..." if error else None,
    )


def planned_store(path, hashes=("abc",)):
    store = Store(path)
    store.record_experiment(
        "e", "name = 'e'", {"name": "e"}, "e.toml", [(h, {"subject": {}}) for h in hashes]
    )
    return store


def test_run_round_trips_with_arrays_nan_and_inf(tmp_path):
    rows = [
        Row(0, "a", "a", math.nan, {"eig": np.array([3.0, 1.0]).tolist()}),
        Row(5, "b", "b", math.inf, {}, {"seconds": 0.2}, {"bn_mode": "train"}, ["overflow"]),
    ]
    with planned_store(tmp_path / "r.db") as store:
        store.write_run("e", result(rows=rows))
        got = store.measurements("e")
    assert math.isnan(got[0]["value"]) and got[0]["details"] == {"eig": [3.0, 1.0]}
    assert got[1]["value"] == math.inf and got[1]["step"] == 5
    assert got[1]["settings"] == {"bn_mode": "train"} and got[1]["notes"] == ["overflow"]


def test_rewriting_a_run_replaces_its_measurements(tmp_path):
    with planned_store(tmp_path / "r.db") as store:
        store.write_run("e", result(status="failed", error="boom", rows=[]))
        store.write_run("e", result())
        assert store.statuses("e") == {"abc": "ok"}
        assert len(store.measurements("e")) == 1


def test_runs_lists_planned_runs_not_yet_run_as_pending(tmp_path):
    with planned_store(tmp_path / "r.db", hashes=("abc", "def")) as store:
        store.write_run("e", result())
        assert [(r["hash"], r["status"]) for r in store.runs("e")] == [
            ("abc", "ok"),
            ("def", "pending"),
        ]


def test_store_uses_wal_journal(tmp_path):
    Store(tmp_path / "r.db").close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_non_sqlite_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"my precious notes\n" * 100)
    with pytest.raises(StoreError, match="not an SQLite file"):
        Store(path)
    assert path.read_bytes() == b"my precious notes\n" * 100


def test_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a normscope results store"):
        Store(path)
    assert path.read_bytes() == before


def test_corrupt_sqlite_file_is_a_store_error(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreError, match="corrupt"):
        Store(path)


def test_unwritable_location_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store(blocker / "sub" / "r.db")


def test_read_only_filesystem_is_a_store_error():
    with pytest.raises(StoreError):
        Store("/proc/normscope-results/r.db")


def test_missing_store_opened_read_only_says_how_to_make_one(tmp_path):
    with pytest.raises(StoreError, match="normscope run"):
        Store(tmp_path / "none.db", readonly=True)


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "r.db").close()
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("UPDATE normscope_schema SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="cannot read"):
        Store(tmp_path / "r.db")


# ------------------------------------------------- reading a store its writer left behind
WRITER_KILLED_MIDWAY = """
import os, sys
from normscope.experiments.store import Store
from tests.experiments.test_store import result
store = Store(sys.argv[1])
store.conn.execute("PRAGMA wal_autocheckpoint=0")  # every commit stays in the -wal file
store.record_experiment("e", "name = 'e'", {}, "e", [(str(i), {}) for i in range(42)])
for i in range(42):
    if i == 12:
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file holds 12 runs
    store.write_run("e", result(str(i)))
os._exit(0)  # killed: no close, no checkpoint
"""


@contextlib.contextmanager
def read_only_folder(folder):
    """Make ``folder`` refuse new files, whoever runs the tests: permissions for a normal
    user; for root (who ignores them) the immutable attribute, or, where that is not
    allowed either, a folder in the place of the -shm file SQLite would create."""
    undo = None
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    else:
        (folder / "r.db-shm").mkdir()
    try:
        if undo is not None:
            with pytest.raises(OSError):
                (folder / "probe").touch()
        yield
    finally:
        if undo:
            undo()


def test_a_killed_writers_store_in_a_read_only_folder_is_read_whole(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    db = folder / "r.db"
    root = Path(__file__).parents[2]
    subprocess.run(
        [sys.executable, "-c", WRITER_KILLED_MIDWAY, str(db)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
    )
    (folder / "r.db-shm").unlink()
    assert (folder / "r.db-wal").stat().st_size > 0
    before = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
    with read_only_folder(folder), Store(db, readonly=True) as store:
        assert len(store.runs("e")) == 42 and len(store.measurements("e")) == 42
        assert {r["status"] for r in store.runs("e")} == {"ok"}
        assert store._copy is not None  # read from a private copy, where SQLite could write
    after = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())
    assert after == [entry for entry in before if entry[0] != "r.db-shm"]


def test_a_journal_that_cannot_be_read_is_refused_not_skipped(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    with planned_store(db) as store:
        store.conn.execute("PRAGMA wal_autocheckpoint=0")
        store.write_run("e", result())
        monkeypatch.setattr(Store, "_open", staticmethod(_fail_read_only(Store._open)))
        monkeypatch.setattr(tempfile, "mkdtemp", _no_space)
        with pytest.raises(StoreError, match="recent commits in its journal"):
            Store(db, readonly=True)


def _fail_read_only(open_):
    def fail(uri):
        if "mode=ro" in uri:
            raise sqlite3.OperationalError("unable to open database file")
        return open_(uri)

    return fail


def _no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_runs_an_older_store_left_out_of_its_plan_are_counted(tmp_path):
    with planned_store(tmp_path / "r.db", hashes=("abc",)) as store:
        store.write_run("e", result("abc"))
        store.write_run("e", result("old"))  # as an older normscope could leave it
        assert store.unplanned("e") == 1 and [r["hash"] for r in store.runs("e")] == ["abc"]
