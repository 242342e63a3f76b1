import math
import sqlite3

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
