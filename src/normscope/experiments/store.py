"""The results store: one SQLite file (WAL mode) that only drivers write.

Tables: ``experiments`` (name, spec TOML and JSON), ``planned`` (the runs of each
experiment's current spec), ``runs`` (hash, config JSON, status, times, error and
traceback, host, versions), ``measurements`` (run, step, name, value, details /
cost / settings JSON, notes) and ``leases`` (the runs a live driver is computing, see
:mod:`normscope.experiments.leases`). A finished run is written in one transaction, so a
crash at any moment loses at most the runs in flight and never leaves a half-written
run. Opening a file that is not a normscope store raises :class:`StoreError` without
touching it.

What the store guarantees:

- **No stored run is hidden.** Check, report and export show the runs of each
  experiment's current plan, and a plan may only replace one that it covers: a spec
  whose plan leaves out stored runs of its name (or runs another live process is
  computing under that name) is refused with :class:`PlanConflictError`, which says how
  to name the new spec. A spec that adds sweep values extends the stored runs.
- **Concurrent drivers share the work.** :meth:`Store.begin` checks the plan, records it
  and leases the runs to compute in one ``BEGIN IMMEDIATE`` transaction; other drivers
  skip leased runs and wait for their results.
- **Read-only opening shows everything or nothing.** A store whose last writer was
  killed keeps recent commits in its ``-wal`` file; where SQLite cannot open that
  read-only (no ``-shm`` file and a folder it cannot write), the store and its journal
  are copied to a private temporary folder and read there, never the main file alone.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from normscope.errors import StoreError
from normscope.experiments import leases
from normscope.experiments.execute import RunResult
from normscope.outputs import sqlite_files

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
# Added after schema 1 was released; created where missing, readable by older versions.
_LEASES = """CREATE TABLE IF NOT EXISTS leases (
    experiment TEXT NOT NULL, hash TEXT NOT NULL, owner TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (experiment, hash))"""


class PlanConflictError(StoreError):
    """A spec's plan would hide stored runs of its experiment name (or runs another
    process is computing under it)."""


@dataclass
class Lease:
    """The runs of one call of :meth:`Store.begin`: ``mine`` to compute (leased to
    ``owner``), ``elsewhere`` being computed by other live processes (hash -> owner)."""

    experiment: str
    owner: str
    mine: list[str] = field(default_factory=list)
    elsewhere: dict[str, str] = field(default_factory=dict)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


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
        self._copy: Path | None = None
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
        try:
            if not self.readonly:
                return self._open(f"{base}?mode=rwc")
            try:
                return self._open(f"{base}?mode=ro")
            except sqlite3.Error:
                # SQLite cannot read a WAL store read-only when it may not create the -shm
                # file (a read-only folder). Reading the main file alone (immutable=1) would
                # silently miss every commit still in the -wal file.
                if self._journal_pending():
                    return self._open_copy()
                return self._open(f"{base}?immutable=1")
        except sqlite3.Error as err:
            raise StoreError(self._open_problem(err)) from None

    def _journal_pending(self) -> bool:
        """Whether a -wal or -journal file beside the store holds data."""
        for path in sqlite_files(self.path)[1:]:
            try:
                if path.stat().st_size > 0 and not path.name.endswith("-shm"):
                    return True
            except OSError:
                continue
        return False

    def _open_copy(self) -> sqlite3.Connection:
        """Copy the store and its journal files to a private folder and open the copy,
        where SQLite can replay the journal; the copy is removed on :meth:`close`."""
        folder = None
        try:
            folder = Path(tempfile.mkdtemp(prefix="normscope-store-"))
            for path in sqlite_files(self.path):
                if path.exists() and not path.name.endswith("-shm"):
                    shutil.copyfile(path, folder / path.name)
            conn = self._open((folder / self.path.name).as_uri() + "?mode=rw")
        except (OSError, sqlite3.Error) as err:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise StoreError(
                f"results store {str(self.path)!r} has recent commits in its journal file, "
                f"which SQLite can read only where it may write, and copying it to a "
                f"temporary folder failed ({err}). Open it once from a writable folder, or "
                "copy the store and its -wal file there."
            ) from None
        self._copy = folder
        return conn

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
                tables = {
                    r[0]
                    for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
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
        self.has_leases = "leases" in tables
        if not self.has_leases and not self.readonly:
            self._write(lambda conn: conn.execute(_LEASES))
            self.has_leases = True

    def _create(self) -> None:
        if self.readonly:
            raise StoreError(f"{str(self.path)!r} is an empty file, not a results store.")
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            with self.transaction():
                # Another process may have created the store since this one looked.
                if self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    return
                for statement in [*_SCHEMA.split(";"), _LEASES]:
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

    def _write(self, fn, *args) -> Any:
        if self.readonly:
            raise StoreError(f"results store {str(self.path)!r} was opened read-only.")
        try:
            with self.transaction() as conn:
                return fn(conn, *args)
        except sqlite3.Error as err:
            raise StoreError(f"cannot write results store {str(self.path)!r}: {err}.") from None

    def close(self) -> None:
        self.conn.close()
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

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
        """Store an experiment's spec and the hashes of its current plan.

        Raises :class:`PlanConflictError` (and stores nothing) when the plan leaves out
        runs stored under ``name`` or leased by a live process.
        """
        self._write(self._record, name, spec_toml, spec_json, source, list(planned), "")

    def begin(
        self,
        name: str,
        spec_toml: str,
        spec_json: dict[str, Any],
        source: str,
        planned: Iterable[tuple[str, dict[str, Any]]],
        *,
        skip: Iterable[str] = ("ok", "failed"),
    ) -> Lease:
        """Record the experiment (as :meth:`record_experiment`) and, in the same
        transaction, lease to this caller every planned run that is neither stored with
        a status in ``skip`` nor leased by another live process."""
        planned = list(planned)
        lease = Lease(name, leases.new_owner())

        def write(conn: sqlite3.Connection) -> Lease:
            self._record(conn, name, spec_toml, spec_json, source, planned, lease.owner)
            return self._lease(conn, lease, [h for h, _ in planned], set(skip))

        return self._write(write)

    def renew(self, lease: Lease, *, skip: Iterable[str] = ("ok", "failed")) -> list[str]:
        """Take over the runs of ``lease.elsewhere`` whose process died before storing
        them; drop from it the runs that are now stored. Returns the runs it took
        (also added to ``lease.mine``)."""
        waiting = list(lease.elsewhere)
        before = set(lease.mine)
        lease.elsewhere = {}
        self._write(self._lease, lease, waiting, set(skip))
        return [h for h in lease.mine if h not in before]

    def release(self, lease: Lease) -> None:
        """Drop the leases of ``lease`` whose runs were not stored (the caller stops)."""
        self._write(
            lambda conn: conn.execute(
                "DELETE FROM leases WHERE experiment = ? AND owner = ?",
                (lease.experiment, lease.owner),
            )
        )

    def _lease(
        self, conn: sqlite3.Connection, lease: Lease, hashes: list[str], skip: set[str]
    ) -> Lease:
        name = lease.experiment
        statuses = dict(conn.execute("SELECT hash, status FROM runs WHERE experiment = ?", (name,)))
        owners = dict(conn.execute("SELECT hash, owner FROM leases WHERE experiment = ?", (name,)))
        take = []
        for h in hashes:
            if statuses.get(h) in skip:
                continue
            owner = owners.get(h)
            if owner is not None and owner != lease.owner and leases.alive(owner):
                lease.elsewhere[h] = owner
            else:
                take.append(h)
        now = _now()
        conn.executemany(
            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
            [(name, h, lease.owner, now) for h in take],
        )
        lease.mine += take
        return lease

    def _record(
        self,
        conn: sqlite3.Connection,
        name: str,
        spec_toml: str,
        spec_json: dict[str, Any],
        source: str,
        planned: list[tuple[str, dict[str, Any]]],
        owner: str,
    ) -> None:
        self._check_plan(conn, name, spec_json, {h for h, _ in planned}, owner)
        conn.execute(
            "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?)",
            (name, spec_toml, _dumps(spec_json), source, _now()),
        )
        conn.execute("DELETE FROM planned WHERE experiment = ?", (name,))
        conn.executemany(
            "INSERT INTO planned VALUES (?, ?, ?, ?)",
            [(name, h, i, _dumps(c)) for i, (h, c) in enumerate(planned)],
        )

    def _check_plan(
        self,
        conn: sqlite3.Connection,
        name: str,
        spec_json: dict[str, Any],
        plan: set[str],
        owner: str,
    ) -> None:
        """Refuse a plan that leaves out runs stored under ``name`` or leased to another
        live process: recording it would hide them from check, report and export."""
        busy = {
            o
            for h, o in conn.execute("SELECT hash, owner FROM leases WHERE experiment = ?", (name,))
            if h not in plan and o != owner and leases.alive(o)
        }
        stored = conn.execute(
            "SELECT hash, versions FROM runs WHERE experiment = ?", (name,)
        ).fetchall()
        left_out = [json.loads(v or "{}").get("normscope") for h, v in stored if h not in plan]
        if not busy and not left_out:
            return
        taken = {r[0] for r in conn.execute("SELECT name FROM experiments")}
        new_name = next(
            f"{name}-{i}" for i in range(2, len(taken) + 3) if f"{name}-{i}" not in taken
        )
        fix = f"Give this spec another name (name = {json.dumps(new_name)}) or another --db"
        if busy:
            who = ", ".join(sorted(leases.describe(o) for o in busy))
            raise PlanConflictError(
                f"another normscope process ({who}) is running experiment {name!r} in "
                f"{str(self.path)!r} from a spec that plans other runs than this one; "
                f"running both under one name would hide that process's runs. {fix}, or "
                "wait until that process has finished. Nothing was stored."
            )
        import normscope

        row = conn.execute("SELECT spec_json FROM experiments WHERE name = ?", (name,)).fetchone()
        same_spec = row is not None and row[0] == _dumps(spec_json)
        versions = sorted({v for v in left_out if v and v != normscope.__version__})
        why = (
            f"they were made by normscope {', '.join(versions)} and this is "
            f"{normscope.__version__} (a run's hash includes the version, so this version "
            "plans new runs)"
            if same_spec and versions
            else "the spec changed since they ran"
        )
        raise PlanConflictError(
            f"experiment {name!r} in {str(self.path)!r} holds {len(left_out)} stored "
            f"run(s) that this spec does not plan: {why}. Running it under the same name "
            f"would hide them from check, report and export. {fix}; to extend a sweep, keep "
            "its stored values in the spec. Nothing was stored."
        )

    def write_run(self, experiment: str, result: RunResult) -> None:
        """Replace the run ``result.hash`` of ``experiment`` and its measurements, and drop
        its lease."""

        def write(conn: sqlite3.Connection) -> None:
            for table, column in (("measurements", "run"), ("leases", "hash")):
                conn.execute(
                    f"DELETE FROM {table} WHERE experiment = ? AND {column} = ?",
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

    def unplanned(self, experiment: str) -> int:
        """How many stored runs of ``experiment`` its current plan leaves out (possible
        only in stores written before plans had to cover their stored runs)."""
        return self._query(
            "SELECT count(*) FROM runs r WHERE r.experiment = ? AND NOT EXISTS (SELECT 1 "
            "FROM planned p WHERE p.experiment = r.experiment AND p.hash = r.hash)",
            (experiment,),
        )[0][0]

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
