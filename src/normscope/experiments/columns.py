"""The columns a spec's results will have, known before anything runs.

The wide frame (:func:`normscope.results.wide`) that claims and plots read has: the
keys ``experiment``, ``run``, ``status``, ``step``; every config field of the planned
runs as a dotted path (``subject.net.width``, plus ``subject.net.input_shape`` and
``subject.net.output_dim``, which a run fills in from its data); one column per
measurement label and one per scalar detail of it (``fisher_spectrum.mean``: which
details a measure returns is known only once it ran, so any ``label.key`` is
accepted); and the theory columns (``theory.lambda_max``), which need no measurement
and are computed here. A column name outside these is a typo, refused at spec time
with the closest name instead of failing the claim after the whole sweep has run.
"""

from __future__ import annotations

import difflib
from typing import Any

import pandas as pd

from normscope.errors import NormscopeError, UnknownNameError
from normscope.experiments import theory_columns
from normscope.experiments.frames import KEYS, _config_columns
from normscope.experiments.plan import RunConfig
from normscope.experiments.spec import Spec

FILLED_BY_DATA = ("subject.net.input_shape", "subject.net.output_dim")


def planned_frame(runs: list[RunConfig], experiment: str) -> pd.DataFrame:
    """One row per planned run: its config columns and its theory columns."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"experiment": experiment, "run": run.hash, "step": 0}
        row.update(_config_columns(run.config))
        for entry in run.config["theory"]:
            try:
                columns = theory_columns.compute(entry["name"], run.config, entry["options"])
            except NormscopeError as err:
                raise type(err)(f"theory {entry['name']!r}: {err}") from None
            row.update({f"theory.{k}": v for k, v in columns.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def known(column: str, frame: pd.DataFrame, labels: set[str]) -> bool:
    """Whether ``column`` will exist in the wide frame of the planned runs."""
    if column in frame.columns or column in labels or column in KEYS:
        return True
    if column in FILLED_BY_DATA:
        return True
    return any(column.startswith(f"{label}.") for label in labels)


def _claim_fields(claim: Any) -> list[tuple[str, str]]:
    keys = ("x", "y", "by", "theory", "deviation_from")
    fields = [(key, getattr(claim, key, None)) for key in keys]
    fields += [(f"filter.{key}", key) for key in claim.filter]
    return [(where, name) for where, name in fields if name is not None]


def _plot_fields(plot: Any) -> list[tuple[str, str]]:
    ys = plot.y if isinstance(plot.y, list) else [plot.y]
    fields = [("x", plot.x)]
    fields += [("y" if len(ys) == 1 else f"y[{i}]", y) for i, y in enumerate(ys)]
    fields += [("color", plot.color), ("facet", plot.facet)]
    fields += [(f"filter.{key}", key) for key in plot.filter]
    return [(where, name) for where, name in fields if name is not None]


def named_columns(spec: Spec) -> list[tuple[str, str]]:
    """(field path in the spec, column name) of every column a claim or plot names."""
    out = [
        (f"claim[{i}].{where}", name)
        for i, claim in enumerate(spec.claim)
        for where, name in _claim_fields(claim)
    ]
    out += [
        (f"plot[{i}].{where}", name)
        for i, plot in enumerate(spec.plot)
        for where, name in _plot_fields(plot)
    ]
    return out


def _unknown(column: str, frame: pd.DataFrame, labels: set[str]) -> str:
    candidates = [str(c) for c in frame.columns] + sorted(labels) + list(FILLED_BY_DATA)
    _, _, tail = column.partition(".")
    if tail:  # a detail of a misspelt label: suggest the label with the same detail
        candidates += [f"{label}.{tail}" for label in labels]
    close = difflib.get_close_matches(column, candidates, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    theory = sorted(str(c) for c in frame.columns if str(c).startswith("theory."))
    return (
        f"no column {column!r} will exist in this experiment's results.{hint} Columns are "
        f"the measurements ({', '.join(sorted(labels)) or 'none'}) and their details as "
        "'label.key'"
        + (f", the theory columns ({', '.join(theory)})" if theory else "")
        + ", the config fields as dotted paths (e.g. 'subject.net.width') and 'step'."
    )


def check_columns(spec: Spec, runs: list[RunConfig], source: str) -> None:
    """Raise :class:`~normscope.errors.UnknownNameError` for the first column a claim or
    plot of ``spec`` names that its planned ``runs`` will not have."""
    named = named_columns(spec)
    if not named:
        return
    try:
        frame = planned_frame(runs, spec.name)
    except NormscopeError as err:
        raise type(err)(f"{source}: {err}") from None
    labels = {m.stored_name for m in spec.measure}
    for where, column in named:
        if not known(column, frame, labels):
            raise UnknownNameError(f"{source}: {where}: {_unknown(column, frame, labels)}")
