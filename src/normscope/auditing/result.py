"""AuditResult: every measurement of an audit, as tidy pandas tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from normscope.auditing.details import layer_values, scalar_details
from normscope.measurement import Measurement

_KEYS = ("variant", "surgery", "bn_mode")


@dataclass
class RunRecord:
    """The measurements of one variant in one batch-norm mode.

    ``failed``: measure -> error message; ``skipped``: measure -> why it was not taken
    (the budget ran out).
    """

    label: str
    surgery: str
    bn_mode: str
    measurements: dict[str, Measurement] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def keys(self) -> dict[str, str]:
        return {"variant": self.label, "surgery": self.surgery, "bn_mode": self.bn_mode}


@dataclass
class AuditResult:
    """What ``normscope.audit`` found, side by side for every variant.

    Tables (pandas): :attr:`table` (one row per variant and measure: the headline value),
    :attr:`layers` (one row per variant, measure, per-layer quantity and layer),
    :attr:`details` (the scalar details: Lipschitz bounds, slopes, gradient norms...).
    ``variant`` is the run's label (``as_given/train``, ``no_norm``...), ``surgery`` the
    variant it was built by, ``bn_mode`` the batch-norm mode ("" where the variant holds
    no batch norm). ``skipped`` maps variants that could not be built to the reason,
    ``notes`` say what was chosen and what a reader must know, ``settings`` hold the
    data, loss, seed, plan and options.
    """

    name: str
    runs: list[RunRecord]
    skipped: dict[str, str]
    notes: list[str]
    settings: dict[str, Any]
    norm_layers: list[tuple[str, str]]
    seconds: float = 0.0

    @property
    def measures(self) -> list[str]:
        return list(self.settings["measures"])

    @property
    def table(self) -> pd.DataFrame:
        """variant, surgery, bn_mode, measure, value, status, seconds, notes."""
        rows = []
        for run in self.runs:
            for name in self.measures:
                rows.append(run.keys | {"measure": name, **_cell(run, name)})
        columns = [*_KEYS, "measure", "value", "status", "seconds", "notes"]
        return pd.DataFrame(rows, columns=columns)

    @property
    def layers(self) -> pd.DataFrame:
        """variant, surgery, bn_mode, measure, quantity, index, layer, value."""
        rows = [
            run.keys | {"measure": name, "quantity": q, "index": i, "layer": layer, "value": v}
            for run in self.runs
            for name, m in run.measurements.items()
            for q, i, layer, v in layer_values(m)
        ]
        columns = [*_KEYS, "measure", "quantity", "index", "layer", "value"]
        return pd.DataFrame(rows, columns=columns)

    @property
    def details(self) -> pd.DataFrame:
        """variant, surgery, bn_mode, measure, key, value (numeric scalar details)."""
        rows = [
            run.keys | {"measure": name, "key": key, "value": value}
            for run in self.runs
            for name, m in run.measurements.items()
            for key, value in scalar_details(m).items()
        ]
        return pd.DataFrame(rows, columns=[*_KEYS, "measure", "key", "value"])

    def wide(self) -> pd.DataFrame:
        """Headline values with one row per variant and one column per measure."""
        table = self.table
        if table.empty:
            return pd.DataFrame(columns=self.measures)
        out = table.pivot(index="variant", columns="measure", values="value")
        order = [r.label for r in self.runs]
        return out.reindex(index=order, columns=self.measures)

    def save(self, db: str | Path) -> str:
        """Store every run in the results store ``db``; returns the experiment name."""
        from normscope.auditing.saving import save

        return save(self, db)

    def write_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML page of this audit to ``path``."""
        from normscope.auditing.render import write_html

        return write_html(self, path)

    def __repr__(self) -> str:
        return (
            f"AuditResult({self.name!r}: {len(self.runs)} runs, "
            f"{len(self.measures)} measures, {len(self.skipped)} variants skipped)"
        )


def _cell(run: RunRecord, name: str) -> dict[str, Any]:
    m = run.measurements.get(name)
    if m is not None:
        seconds = float(m.cost.get("seconds", math.nan))
        return {"value": m.value, "status": "ok", "seconds": seconds, "notes": "; ".join(m.notes)}
    reason = run.failed.get(name) or run.skipped.get(name, "")
    status = "failed" if name in run.failed else "skipped"
    return {"value": math.nan, "status": status, "seconds": math.nan, "notes": reason}
