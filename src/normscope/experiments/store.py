"""The results store: one SQLite file (WAL mode) that only the driver writes.

Tables: ``experiments`` (name, spec TOML and JSON), ``planned`` (the runs of each
experiment's current spec), ``runs`` (hash, config JSON, status, times, error and
traceback, host, versions) and ``measurements`` (run, step, name, value, details /
cost / settings JSON, notes). A finished run is written in one transaction, so a
crash at any moment loses at most the runs in flight and never leaves a half-written
run. Opening a file that is not a normscope store raises :class:`StoreError` without
touching it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from normscope.errors import StoreError
from normscope.experiments.execute import RunResult

SCHEMA_VERSION = 1
APP = "normscope"
DEFAULT_PATH = Path("results") / "normscope.db"
_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE normscope_schema (app TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE experiments (
    name TEXT PRIMARY KEY, spec_toml TEXT NOT NULL, spec_json TEXT NOT NULL,
    source TEXT, updated TEXT NOT NULL);
CREATE TABLE planned (
    experiment TEXT NOT NULL, hash TEXT NOT NULL, position INTEGER NOT NULL,
    config TEXT NOT NULL, PRIMARY KEY (experiment, hash));
CREATE TABLE runs (
    experiment TEXT NOT NULL, hash TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, started TEXT, finished TEXT, seconds REAL, error TEXT,
    traceback TEXT, host TEXT, versions TEXT, PRIMARY KEY (experiment, hash));
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY, experiment TEXT NOT NULL, run TEXT NOT NULL,
    step INTEGER NOT NULL, name TEXT NOT NULL, measure TEXT NOT NULL, value REAL,
    details TEXT, cost TEXT, settings TEXT, notes TEXT);
CREATE INDEX measurements_run ON measurements (experiment, run);
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _check_file(path: Path) -> None:
    """Refuse files that are not SQLite databases before SQLite opens them."""
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise StoreError(f"{str(path)!r} is a folder; give the path of a results file (.db).")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_HEADER))
    except OSError as err:
        raise StoreError(f"cannot read results store {str(path)!r}: {err}.") from None
    if header != _HEADER:
        raise StoreError(
            f"{str(path)!r} is not a normscope results store (not an SQLite file); give "
            "another --db path. The file was not changed."
        )


class Store:
    """A normscope results store at ``path`` (created when missing unless ``readonly``)."""

    def __init__(self, path: str | Path = DEFAULT_PATH, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        _check_file(self.path)
        if readonly and not self.path.exists():
            raise StoreError(
                f"results store {str(self.path)!r} does not exist; run `normscope run SPEC "
                "--db PATH` first or give the right path."
            )
        self.conn = self._connect()
        try:
            self._check_schema()
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(
                    f"cannot create the folder of results store {str(self.path)!r}: {err}."
                ) from None
        base = self.path.resolve().as_uri()
        # A WAL database in a read-only folder cannot be opened plainly read-only (SQLite
        # wants its -shm file); immutable=1 reads it as a fixed file instead.
        uris = [f"{base}?mode=ro", f"{base}?immutable=1"] if self.readonly else [f"{base}?mode=rwc"]
        for uri in uris[:-1]:
            try:
                return self._open(uri)
            except sqlite3.Error:
                continue
        try:
            return self._open(uris[-1])
        except sqlite3.Error as err:
            raise StoreError(self._open_problem(err)) from None

    @staticmethod
    def _open(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _open_problem(self, err: sqlite3.Error) -> str:
        folder = self.path.parent
        if "unable to open" in str(err) or "readonly" in str(err):
            return (
                f"cannot open results store {str(self.path)!r} ({err}): the folder "
                f"{str(folder)!r} must exist and be writable; choose another --db path."
            )
        return (
            f"{str(self.path)!r} is not a readable normscope results store ({err}); it may "
            "be corrupt. Give another --db path."
        )

    def _check_schema(self) -> None:
        try:
            tables = {
                r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                self._create()
                return
            if "normscope_schema" not in tables:
                raise StoreError(
                    f"{str(self.path)!r} is an SQLite database but not a normscope results "
                    "store; give another --db path. The file was not changed."
                )
            row = self.conn.execute("SELECT app, version FROM normscope_schema").fetchone()
        except sqlite3.Error as err:
            raise StoreError(self._open_problem(err)) from None
        if row is None or row[0] != APP or row[1] > SCHEMA_VERSION:
            raise StoreError(
                f"results store {str(self.path)!r} has schema {row!r}, which this normscope "
                f"(schema {SCHEMA_VERSION}) cannot read; upgrade normscope or use another path."
            )

    def _create(self) -> None:
        if self.readonly:
            raise StoreError(f"{str(self.path)!r} is an empty file, not a results store.")
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO normscope_schema VALUES (?, ?)", (APP, SCHEMA_VERSION)
                )
        except sqlite3.Error as err:
            raise StoreError(self._open_problem(err)) from None

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _write(self, fn, *args) -> None:
        if self.readonly:
            raise StoreError(f"results store {str(self.path)!r} was opened read-only.")
        try:
            with self.transaction() as conn:
                fn(conn, *args)
        except sqlite3.Error as err:
            raise StoreError(f"cannot write results store {str(self.path)!r}: {err}.") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def record_experiment(
        self,
        name: str,
        spec_toml: str,
        spec_json: dict[str, Any],
        source: str,
        planned: Iterable[tuple[str, dict[str, Any]]],
    ) -> None:
        """Store an experiment's spec and the hashes of its current plan."""
        from datetime import UTC, datetime

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?)",
                (
                    name,
                    spec_toml,
                    _dumps(spec_json),
                    source,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
            conn.execute("DELETE FROM planned WHERE experiment = ?", (name,))
            conn.executemany(
                "INSERT INTO planned VALUES (?, ?, ?, ?)",
                [(name, h, i, _dumps(c)) for i, (h, c) in enumerate(planned)],
            )

        self._write(write)

    def write_run(self, experiment: str, result: RunResult) -> None:
        """Replace the run ``result.hash`` of ``experiment`` and its measurements."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM measurements WHERE experiment = ? AND run = ?",
                (experiment, result.hash),
            )
            conn.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    experiment,
                    result.hash,
                    _dumps(result.config),
                    result.status,
                    result.started,
                    result.finished,
                    result.seconds,
                    result.error,
                    result.traceback,
                    result.host,
                    _dumps(result.versions),
                ),
            )
            conn.executemany(
                "INSERT INTO measurements (experiment, run, step, name, measure, value, "
                "details, cost, settings, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        experiment,
                        result.hash,
                        r.step,
                        r.name,
                        r.measure,
                        None if math.isnan(r.value) else r.value,
                        _dumps(r.details),
                        _dumps(r.cost),
                        _dumps(r.settings),
                        _dumps(r.notes),
                    )
                    for r in result.rows
                ],
            )

        self._write(write)

    # ------------------------------------------------------------------ reading
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read results store {str(self.path)!r}: {err}.") from None

    def experiments(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM experiments ORDER BY name")]

    def spec_toml(self, experiment: str) -> str:
        rows = self._query("SELECT spec_toml FROM experiments WHERE name = ?", (experiment,))
        if not rows:
            from normscope.errors import unknown_name

            raise unknown_name("experiment", experiment, self.experiments())
        return rows[0][0]

    def statuses(self, experiment: str) -> dict[str, str]:
        """Run hash -> status for every stored run of ``experiment``."""
        rows = self._query("SELECT hash, status FROM runs WHERE experiment = ?", (experiment,))
        return dict(rows)

    def runs(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """The runs of the current plans (with ``status`` "pending" when not yet run)."""
        sql = (
            "SELECT p.experiment, p.hash, p.position, coalesce(r.config, p.config), "
            "coalesce(r.status, 'pending'), r.started, r.finished, r.seconds, r.error, "
            "r.traceback, r.host, r.versions FROM planned p LEFT JOIN runs r "
            "ON r.experiment = p.experiment AND r.hash = p.hash"
        )
        args: tuple[Any, ...] = ()
        if experiment is not None:
            sql += " WHERE p.experiment = ?"
            args = (experiment,)
        keys = (
            "experiment",
            "hash",
            "position",
            "config",
            "status",
            "started",
            "finished",
            "seconds",
            "error",
            "traceback",
            "host",
            "versions",
        )
        out = []
        for row in self._query(sql + " ORDER BY p.experiment, p.position", args):
            run = dict(zip(keys, row, strict=True))
            run["config"] = json.loads(run["config"])
            run["versions"] = json.loads(run["versions"]) if run["versions"] else {}
            out.append(run)
        return out

    def measurements(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Every stored measurement of the current plans' runs."""
        sql = (
            "SELECT m.experiment, m.run, m.step, m.name, m.measure, m.value, m.details, "
            "m.cost, m.settings, m.notes FROM measurements m JOIN planned p "
            "ON p.experiment = m.experiment AND p.hash = m.run"
        )
        args: tuple[Any, ...] = ()
        if experiment is not None:
            sql += " WHERE m.experiment = ?"
            args = (experiment,)
        keys = ("experiment", "run", "step", "name", "measure", "value")
        out = []
        for row in self._query(sql + " ORDER BY p.position, m.id", args):
            rec = dict(zip(keys, row[:6], strict=True))
            rec["value"] = math.nan if rec["value"] is None else rec["value"]
            for key, text in zip(("details", "cost", "settings", "notes"), row[6:], strict=True):
                rec[key] = json.loads(text) if text else None
            out.append(rec)
        return out
