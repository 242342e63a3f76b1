"""Stored results as pandas frames (public as ``normscope.results``).

``load`` gives the tidy frame (one row per measurement); :func:`wide` turns it into one
row per run and training step, with a column per measurement name, per scalar detail
(``name.key``) and per theory column (``theory.<column>``, repeated on every step of
its run). Plots and claims read the wide frame.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from normscope.experiments.store import Store
from normscope.outputs import check_output, replacing, sqlite_files
from normscope.sanitize import csv_cell

KEYS = ("experiment", "run", "status", "step")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"subject": {"net": {"width": 8}}}`` -> ``{"subject.net.width": 8}``; lists
    become tuples so that the columns can be grouped."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            out[name] = value
    return out


def _config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The config fields that define the network, data and training (measure and theory
    lists are the same for every run of an experiment and stay out of the frame)."""
    keep = {k: v for k, v in config.items() if k in ("subject", "train") and v is not None}
    return flatten(keep)


def require_experiment(store: Store, experiment: str) -> None:
    """Raise :class:`~normscope.errors.UnknownNameError` unless ``store`` holds
    ``experiment``, with the closest stored name (a quick reproduction is stored as
    ``<name>-quick``) and every stored one."""
    from normscope.errors import UnknownNameError, unknown_name

    names = store.experiments()
    if experiment in names:
        return
    where = f"results store {str(store.path)!r}"
    if not names:
        raise UnknownNameError(
            f"unknown experiment {experiment!r}: {where} holds no experiments yet; run "
            f"`normscope run SPEC --db {store.path}` first, or give another --db."
        )
    raise UnknownNameError(f"{unknown_name('experiment', experiment, names)} (in {where})")


def load(path: str | Path, experiment: str | None = None) -> pd.DataFrame:
    """The tidy frame of a results store.

    Columns: ``experiment``, ``run`` (hash), ``status``, ``step``, ``name`` (the stored
    measurement name), ``measure`` (the registry name), ``value``, ``details``, ``cost``,
    ``settings``, ``notes``, then every config field as a dotted column
    (``subject.net.width``). Only runs of each experiment's current spec are included.
    An ``experiment`` the store does not hold raises
    :class:`~normscope.errors.UnknownNameError` with the closest stored name.
    """
    with Store(path, readonly=True) as store:
        if experiment is not None:
            require_experiment(store, experiment)
        runs = {(r["experiment"], r["hash"]): r for r in store.runs(experiment)}
        rows = []
        for m in store.measurements(experiment):
            run = runs[(m["experiment"], m["run"])]
            rows.append({**m, "status": run["status"], **_config_columns(run["config"])})
    columns = [
        "experiment",
        "run",
        "status",
        "step",
        "name",
        "measure",
        "value",
        "details",
        "cost",
        "settings",
        "notes",
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rest = [c for c in frame.columns if c not in columns]
    return frame[columns + rest]


def _scalar_details(details: Any, name: str) -> dict[str, float]:
    if not isinstance(details, dict):
        return {}
    return {
        f"{name}.{k}": float(v)
        for k, v in details.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, run, step): config columns, measurement values, scalar
    details as ``name.key``, theory columns broadcast over the run's steps."""
    if frame.empty:
        return pd.DataFrame(columns=list(KEYS))
    config_cols = [c for c in frame.columns if c.startswith(("subject.", "train."))]
    records: dict[tuple[Any, ...], dict[str, Any]] = {}
    theory: dict[tuple[str, str], dict[str, float]] = {}
    for row in frame.to_dict("records"):
        if row["name"].startswith("theory."):
            theory.setdefault((row["experiment"], row["run"]), {})[row["name"]] = row["value"]
            continue
        key = (row["experiment"], row["run"], row["status"], row["step"])
        rec = records.setdefault(
            key, {**dict(zip(KEYS, key, strict=True)), **{c: row[c] for c in config_cols}}
        )
        rec[row["name"]] = row["value"]
        rec.update(_scalar_details(row["details"], row["name"]))
    runs = frame.drop_duplicates(["experiment", "run"])
    for row in runs.to_dict("records"):
        steps = [k for k in records if k[:2] == (row["experiment"], row["run"])]
        if not steps:
            key = (row["experiment"], row["run"], row["status"], 0)
            records[key] = {**dict(zip(KEYS, key, strict=True)), **{c: row[c] for c in config_cols}}
            steps = [key]
        for key in steps:
            records[key].update(theory.get(key[:2], {}))
    return pd.DataFrame(list(records.values()))


def select(table: pd.DataFrame, filters: dict[str, Any], step: str | int) -> pd.DataFrame:
    """Rows of a wide frame whose columns match ``filters`` (a list: any of its values),
    at training ``step`` ("all", "first", "last" or a number) of each run."""
    from normscope.errors import ConfigError, unknown_name

    out = table
    for column, want in filters.items():
        if column not in out.columns:
            raise unknown_name("column", column, [str(c) for c in table.columns])
        allowed = want if isinstance(want, list) else [want]
        out = out[out[column].map(lambda v, a=allowed: any(_equal(v, w) for w in a))]
    if step == "all" or out.empty:
        return out
    if isinstance(step, int):
        return out[out["step"] == step]
    if step not in ("first", "last"):
        raise ConfigError(f"step must be 'all', 'first', 'last' or a number, got {step!r}.")
    pick = out.groupby(["experiment", "run"])["step"].transform("max" if step == "last" else "min")
    return out[out["step"] == pick]


def _equal(value: Any, want: Any) -> bool:
    if isinstance(value, float) and isinstance(want, int | float) and not isinstance(want, bool):
        return math.isclose(value, want)
    if isinstance(value, tuple) and isinstance(want, list):
        return list(value) == want
    return value == want


def _cell(value: Any) -> Any:
    import json

    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def default_export_path(db: str | Path, fmt: str) -> Path:
    """Where ``normscope export`` writes without ``--output``: the store's path with the
    format's suffix (``r.db`` -> ``r.csv``), or with the suffix added when that would be
    the store itself (``r.csv`` -> ``r.csv.csv``)."""
    db = Path(db)
    out = db.with_suffix(f".{fmt}")
    return (
        out
        if out.name not in {p.name for p in sqlite_files(db)}
        else db.with_name(f"{db.name}.{fmt}")
    )


def export_table(
    path: str | Path, output: str | Path, fmt: str, experiment: str | None = None
) -> int:
    """Write the tidy frame of ``load(path, experiment)`` as ``csv`` or ``parquet``
    (nested cells as JSON text); returns the number of rows.

    ``output`` may not be the store (or its ``-wal`` / ``-shm`` file): that raises
    :class:`~normscope.errors.ConfigError` before anything is written. The file is
    written under a temporary name and renamed when complete. In CSV, text cells that a
    spreadsheet would run as a formula (``=...``) start with ``'`` (see
    :func:`normscope.sanitize.csv_cell`); Parquet keeps every value as it is stored.
    """
    from normscope.errors import ConfigError, StoreError

    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(
                "Parquet export needs pyarrow: install it with `pip install pyarrow`, or use "
                "--format csv."
            ) from None
    elif fmt != "csv":
        raise ConfigError(f"export format must be 'csv' or 'parquet', got {fmt!r}.")
    output = check_output(output, store=path)
    frame = load(path, experiment).map(_cell)
    try:
        with replacing(output) as tmp:
            if fmt == "csv":
                frame.map(csv_cell).to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
    except OSError as err:
        raise StoreError(f"cannot write {str(output)!r}: {err}.") from None
    return len(frame)
