"""One run, executed where it is scheduled (a worker process, a Ray task, or inline).

A run builds the network and data of its config, wraps them in a Subject, trains it
when the config has ``train``, takes each measure through the registry, computes the
theory columns, and returns a :class:`RunResult`. It never writes to the store (the
driver does) and never raises: any exception becomes a failed result carrying its
message and traceback, with the measurements taken before it.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from normscope.measurement import Measurement


@dataclass
class Row:
    """One stored measurement: a measure's result at a training step."""

    step: int
    name: str
    measure: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """What a run returns to the driver."""

    hash: str
    status: str
    config: dict[str, Any]
    rows: list[Row]
    started: str
    finished: str
    seconds: float
    host: str
    versions: dict[str, str]
    error: str | None = None
    traceback: str | None = None


def jsonable(value: Any) -> Any:
    """Numpy arrays and scalars, tensors and tuples as JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if type(value).__module__ == "torch":
        return value.detach().cpu().tolist() if hasattr(value, "detach") else str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def to_row(step: int, label: str, m: Measurement) -> Row:
    return Row(
        step=int(step),
        name=label,
        measure=m.name,
        value=float(m.value),
        details=jsonable(m.details),
        cost={k: float(v) for k, v in m.cost.items()},
        settings=jsonable(m.settings),
        notes=[str(n) for n in m.notes],
    )


def versions() -> dict[str, str]:
    import torch

    import normscope

    return {
        "normscope": normscope.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_data(config: dict[str, Any], split: str | None = None):
    """The Dataset of a resolved config (``split`` replaces the config's split)."""
    import torch

    from normscope import data

    sub = config["subject"]
    d = dict(sub["data"])
    name, own_split, n, seed = d.pop("name"), d.pop("split"), d.pop("n"), d.pop("seed")
    dtype = torch.float64 if sub["dtype"] == "float64" else torch.float32
    return data.load(name, split=split or own_split, n=n, seed=seed, **d).to(dtype)


def on_split(subject, config: dict[str, Any], split: str | None):
    """``subject`` itself, or the same model and settings on another split of its data."""
    from normscope.subject import Subject

    if split is None:
        return subject
    return Subject(
        subject.model,
        load_data(config, split),
        loss=subject.loss_name,
        bn_mode=subject.bn_mode,
        batch_size=subject.batch_size,
        params=subject.params_selection,
    )


def build_subject(config: dict[str, Any], *, process_group: Any = None, device: Any = None):
    """The Subject of a resolved config; fills ``net.input_shape``/``output_dim`` from the
    data when they are missing (the filled values are written back into ``config``).

    Under ``process_group`` every rank builds the same network and data and keeps its
    shard of the batches (:func:`normscope.distributed.shard`); ``device`` is where the
    network goes (default: where it is built, the CPU).
    """

    from normscope import nets
    from normscope.distributed import shard
    from normscope.subject import Subject

    sub = config["subject"]
    dataset = load_data(config)
    net = sub["net"]
    net.setdefault("input_shape", list(dataset.input_shape))
    net.setdefault("output_dim", dataset.output_dim)
    model = nets.build({**net, "dtype": sub["dtype"]})
    if device is not None:
        model = model.to(device)
    return Subject(
        model,
        shard(dataset, process_group, batch_size=sub["batch_size"]),
        loss=sub["loss"],
        bn_mode=sub["bn_mode"],
        batch_size=sub["batch_size"],
        params=sub["params"],
        process_group=process_group,
    )


FLAT_READINGS = {
    "cnn": "a 1-D CNN over {size} positions with one channel, not an image CNN",
    "transformer": "a sequence of {size} tokens of one feature each, not image patches",
}
"""How an architecture reads a flat (L,) sample (see ``nets.cnn`` and
``nets.transformer``)."""


def run_notes(config: dict[str, Any]) -> list[str]:
    """Notes for every measurement of a built run (``config`` after :func:`build_subject`):
    an image architecture on images the data source flattened says how it reads them."""
    from normscope import data

    sub = config["subject"]
    net, source = sub["net"], sub["data"]
    options = {k: v for k, v in source.items() if k not in ("name", "n", "split", "seed")}
    reading = FLAT_READINGS.get(net["arch"])
    if reading is None or not data.flattens(source["name"], options):
        return []
    shape = tuple(net["input_shape"])
    return [
        f"arch {net['arch']!r} on {source['name']} images flattened to shape {shape}: "
        f"{reading.format(size=shape[0])}. For images, load them unflattened: "
        "flatten = false in the data options (subject.data in a spec, --data-option "
        "flatten=false for `normscope measure`, flatten=False in data.load)."
    ]


def _measure(subject, config: dict[str, Any], entry: dict[str, Any]) -> Measurement:
    from normscope import measures

    target = on_split(subject, config, entry.get("split"))
    return measures.get(entry["name"])(target, **entry["options"])


def _train(subject, config: dict[str, Any], rows: list[Row]) -> int:
    from normscope import measures
    from normscope.experiments.training import Tracked, training_hook

    tracked = [
        Tracked(
            e["label"],
            e["name"],
            measures.get(e["name"]),
            e["every"],
            e["options"],
            None if e.get("split") is None else load_data(config, e["split"]),
            e.get("point", "iterate"),
        )
        for e in config["measures"]
        if e["every"] is not None
    ]

    def on_record(step: int, label: str, m: Measurement) -> None:
        rows.append(to_row(step, label, m))

    steps = training_hook()(subject, dict(config["train"]), tracked, on_record)
    return int(steps)


def _theory_rows(config: dict[str, Any]) -> list[Row]:
    from normscope.experiments import theory_columns

    rows = []
    for entry in config["theory"]:
        columns = theory_columns.compute(entry["name"], config, entry["options"])
        rows += [Row(0, f"theory.{k}", entry["name"], v) for k, v in columns.items()]
    return rows


def _body(config: dict[str, Any], rows: list[Row]) -> None:
    subject = build_subject(config)
    notes = run_notes(config)
    try:
        _measure_run(subject, config, rows)
    finally:
        for row in rows:
            if not row.name.startswith("theory."):
                row.notes[:0] = notes


def _measure_run(subject, config: dict[str, Any], rows: list[Row]) -> None:
    trained = config["train"] is not None
    if trained:
        for e in config["measures"]:
            if e["at"] in ("init", "both") and e["every"] is None:
                rows.append(to_row(0, e["label"], _measure(subject, config, e)))
        end_step = _train(subject, config, rows)
    else:
        end_step = 0
    for e in config["measures"]:
        # a tracked measure (every = k) is taken at step 0 and at the end by its tracker
        if not trained or (e["at"] in ("end", "both") and e["every"] is None):
            rows.append(to_row(end_step, e["label"], _measure(subject, config, e)))
    rows += _theory_rows(config)


RUN_THREADS = 1
"""Intra-op threads of every run. Parallel reductions split their sums by thread count,
which changes the last bits of float32 results (about 1e-7 relative between one and two
threads), so a fixed count keeps stored numbers independent of ``--workers`` and of the
machine's cores; sweeps get their parallelism from worker processes instead."""


@contextmanager
def reproducible(run_hash: str) -> Iterator[None]:
    """Deterministic kernels, :data:`RUN_THREADS` threads and a global torch RNG seeded
    from the run's hash, for the duration of one run; the caller's settings and RNG
    state are restored afterwards.

    Every random draw in normscope takes its own seed; this covers whatever else draws
    from the global generator, so a run's numbers never depend on which worker ran it
    or on what ran before it there.
    """
    import torch

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(RUN_THREADS)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_of(run_hash))
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _seed_of(run_hash: str) -> int:
    return int.from_bytes(hashlib.sha256(run_hash.encode()).digest()[:8], "little") >> 1


def execute_run(run_hash: str, config: dict[str, Any]) -> RunResult:
    """Execute one run; never raises (a failure is a result with status ``failed``)."""
    import copy

    config = copy.deepcopy(config)
    started, t0 = _now(), time.perf_counter()
    rows: list[Row] = []
    error = tb = None
    try:
        with reproducible(run_hash):
            _body(config, rows)
    except Exception as err:  # a run's failure is data: the sweep goes on
        error = f"{type(err).__name__}: {err}"
        tb = traceback.format_exc()
    seconds = time.perf_counter() - t0
    status = "ok" if error is None else "failed"
    return RunResult(
        hash=run_hash,
        status=status,
        config=config,
        rows=rows,
        started=started,
        finished=_now(),
        seconds=seconds,
        host=platform.node() or sys.platform,
        versions=versions(),
        error=error,
        traceback=tb,
    )
