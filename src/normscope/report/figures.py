"""Figures of stored results, one per ``[[plot]]`` table (matplotlib, Agg backend)."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from normscope.errors import ConfigError
from normscope.experiments.frames import select
from normscope.experiments.spec import PlotSpec
from normscope.report.labels import column_label, legend_entry

MAX_COLUMNS = 3


def _need(table: pd.DataFrame, column: str | None) -> None:
    if column is not None and column not in table.columns:
        import difflib

        close = difflib.get_close_matches(column, [str(c) for c in table.columns], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"plot column {column!r} is not in the results{hint}")


def _groups(table: pd.DataFrame, column: str | None) -> list[tuple[Any, pd.DataFrame]]:
    if column is None:
        return [(None, table)]
    keys = sorted(table[column].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    return [(k, table[table[column].map(lambda v, k=k: v == k)]) for k in keys]


def _series(ax: Any, rows: pd.DataFrame, plot: PlotSpec, y: str, label: str | None) -> None:
    data = rows[[plot.x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    if data.empty:
        return
    if plot.kind == "scatter":
        ax.scatter(data[plot.x], data[y], s=14, label=label)
        return
    mean = data.groupby(plot.x)[y].mean().sort_index()
    # theory columns are predictions, drawn dashed so they read apart from measurements
    theory = y.startswith("theory.")
    style = {"ls": "--", "marker": None} if theory else {"marker": "o"}
    (line,) = ax.plot(mean.index, mean.to_numpy(), ms=3, label=label, **style)
    if len(data) > len(mean) and not theory:
        ax.scatter(data[plot.x], data[y], s=6, alpha=0.35, color=line.get_color())


def draw(plot: PlotSpec, table: pd.DataFrame, labels: Mapping[str, str] | None = None) -> Figure:
    """Draw ``plot`` from a wide results frame (finished runs only).

    Lines join the mean of y over runs with equal x (seeds); the single runs are drawn
    as faint points beside them. Theory columns (``theory.*``) are dashed lines. Axes,
    legends and panel titles name columns in words (:mod:`normscope.report.labels`;
    ``labels`` are the spec's own additions).
    """
    ys = plot.y if isinstance(plot.y, list) else [plot.y]
    for column in (plot.x, *ys, plot.color, plot.facet):
        _need(table, column)
    rows = table[table["status"] == "ok"] if "status" in table.columns else table
    rows = select(rows, plot.filter, plot.step)
    if rows.empty:
        raise ConfigError("no finished runs match the plot's filter and step")
    panels = _groups(rows, plot.facet)
    ncols = min(MAX_COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False, layout="constrained"
    )
    for ax, (facet_value, panel) in zip(axes.flat, panels, strict=False):
        for y in ys:
            for color_value, group in _groups(panel, plot.color):
                parts = [column_label(y, labels)] if len(ys) > 1 else []
                if plot.color is not None:
                    parts.append(legend_entry(plot.color, color_value, labels))
                _series(ax, group, plot, y, ", ".join(parts) or None)
        ax.set_xscale("log" if plot.logx else "linear")
        ax.set_yscale("log" if plot.logy else "linear")
        ax.set_xlabel(column_label(plot.x, labels))
        ax.set_ylabel(plot.ylabel or column_label(ys[0], labels))
        if plot.facet is not None:
            ax.set_title(legend_entry(plot.facet, facet_value, labels), fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if plot.title:
        # wrapped to the figure's width (about ten characters per inch at this size)
        fig.suptitle(textwrap.fill(plot.title, int(10 * fig.get_figwidth())), fontsize=11)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
