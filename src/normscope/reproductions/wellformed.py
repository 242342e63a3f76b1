"""Checks that a reproduction's claims and plots can be evaluated on its planned runs,
before anything runs: every column they name will exist, and every claim's filter keeps
enough runs at the chosen size. Used by the reproductions' tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from normscope.experiments import theory_columns
from normscope.experiments.frames import _config_columns, select
from normscope.experiments.plan import plan
from normscope.reproductions import Reproduction

FIT_TYPES = ("loglog_slope", "slope")


def planned_frame(rep: Reproduction) -> tuple[pd.DataFrame, set[str]]:
    """One row per planned run with its config columns and theory columns (computed:
    they need no measurement), and the prefixes measured columns will have."""
    rows = []
    for run in plan(rep.spec, source=rep.source):
        row: dict[str, Any] = {"experiment": rep.experiment, "run": run.hash, "step": 0}
        row.update(_config_columns(run.config))
        for entry in run.config["theory"]:
            columns = theory_columns.compute(entry["name"], run.config, entry["options"])
            row.update({f"theory.{k}": v for k, v in columns.items()})
        rows.append(row)
    labels = {m.stored_name for m in rep.spec.measure}
    return pd.DataFrame(rows), labels


def _known(column: str, frame: pd.DataFrame, labels: set[str]) -> bool:
    if column in frame.columns or column in labels or column == "step":
        return True
    return any(column.startswith(f"{label}.") for label in labels)


def _claim_columns(claim: Any) -> list[str]:
    names = [getattr(claim, key, None) for key in ("x", "y", "by", "theory", "deviation_from")]
    return [n for n in names if n is not None]


def problems(rep: Reproduction) -> list[str]:
    """What would keep a claim or plot of ``rep`` from being evaluated (empty: none)."""
    frame, labels = planned_frame(rep)
    out = []
    for claim in rep.spec.claim:
        what = f"claim {claim.name!r}"
        if not claim.name or not claim.paper:
            out.append(f"{what}: give it a `name` and a `paper`")
        if claim.source is None or not claim.basis:
            out.append(
                f"{what}: say where it comes from: `source` (paper, theory or finding) and "
                "`basis` (where the paper says it, the derivation, or the reading it goes "
                "beyond or against)"
            )
        for column in [*_claim_columns(claim), *claim.filter]:
            if not _known(column, frame, labels):
                out.append(f"{what}: column {column!r} will not exist")
        if any(c not in frame.columns for c in claim.filter):
            continue
        kept = select(frame, claim.filter, "all")
        if kept.empty:
            out.append(f"{what}: its filter keeps no planned run")
        elif claim.type in FIT_TYPES and claim.x != "step" and kept[claim.x].nunique() < 3:
            # (a fit over training steps gets its x values from tracking, not the plan)
            out.append(f"{what}: a fit needs >= 3 x values, the filter keeps fewer")
    for i, p in enumerate(rep.spec.plot):
        ys = p.y if isinstance(p.y, list) else [p.y]
        for column in [p.x, *ys, p.color, p.facet, *p.filter]:
            if column is not None and not _known(column, frame, labels):
                out.append(f"plot {i + 1}: column {column!r} will not exist")
    return out
