"""An audit for people: a Rich table for the terminal and a self-contained HTML page.

The page embeds its figures as base64 PNGs (matplotlib, no pyplot state) and escapes
every string that comes from the model, the data or a measure with ``html.escape``.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

import normscope
from normscope.auditing.result import AuditResult
from normscope.errors import ConfigError
from normscope.outputs import write_atomic
from normscope.sanitize import literal_figure_text
from normscope.sanitize import rich_markup as markup
from normscope.terminal import add_key_column, fits

LAYER_PLOTS = (
    ("gradient_norms", "norms", "gradient norm ||dL/dW_l|| per layer (meterez2024)", True),
    ("isometry_gap", "isometry_gap", "isometry gap per layer (meterez2024)", False),
)
"""(measure, per-layer quantity, title, log scale) of each per-layer figure."""


def number(value: float) -> str:
    if value != value:
        return "—"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _cells(result: AuditResult) -> list[tuple[str, list[str]]]:
    table = result.table
    out = []
    for run in result.runs:
        rows = table[table["variant"] == run.label].set_index("measure")
        cells = [
            number(rows.at[m, "value"]) if rows.at[m, "status"] == "ok" else rows.at[m, "status"]
            for m in result.measures
        ]
        out.append((run.label, cells))
    return out


def _table(result: AuditResult, columns: Sequence[int], title: str) -> Table:
    """The variants against the measures at positions ``columns``."""
    rows = _cells(result)
    table = Table(title=markup(title))
    add_key_column(table, "variant", [label for label, _ in rows])
    for i in columns:
        table.add_column(markup(result.measures[i]), justify="right", no_wrap=True)
    for label, cells in rows:
        table.add_row(markup(label), *(markup(cells[i]) for i in columns))
    return table


def rich_tables(result: AuditResult, console: Console) -> list[Table]:
    """Headline values: one row per variant, one column per measure, split into several
    tables (each with the whole variant column) when the measures do not fit the
    console's width. Empty when not even one measure fits beside the variant names."""
    title = f"audit of {result.name}"
    chunks: list[list[int]] = [[]]
    for i in range(len(result.measures)):
        if not fits(console, _table(result, [*chunks[-1], i], title)):
            if not chunks[-1] or not fits(console, _table(result, [i], title)):
                return []
            chunks.append([])
        chunks[-1].append(i)
    return [
        _table(result, columns, title if n == 0 else f"{title} (continued)")
        for n, columns in enumerate(chunks)
    ]


def _print_list(result: AuditResult, console: Console) -> None:
    """The headline values as lines, one block per variant (for very narrow consoles)."""
    console.print(f"audit of {markup(result.name)}", style="bold")
    for label, cells in _cells(result):
        console.print(markup(label), style="bold")
        for name, cell in zip(result.measures, cells, strict=True):
            console.print(f"  {markup(name)}: {markup(cell)}")


def print_result(result: AuditResult, console: Console) -> None:
    """The table (split to fit the console, or a list when very narrow), then skipped
    variants, failed measures and notes."""
    tables = rich_tables(result, console)
    for table in tables:
        console.print(table)
    if not tables:
        _print_list(result, console)
    for variant, reason in result.skipped.items():
        console.print(f"[yellow]skipped[/yellow] {markup(variant)}: {markup(reason)}")
    for run in result.runs:
        for name, error in run.failed.items():
            console.print(
                f"[red]failed[/red] {markup(name)} on {markup(run.label)}: {markup(error)}"
            )
    for note in result.notes:
        console.print(f"note: {markup(note)}")


def layer_order(sequences: Sequence[Sequence[str]]) -> list[str]:
    """One order of layer names that keeps each sequence's order where they agree.

    A name not seen before goes right after the previous name of its own sequence, so
    layers a variant lacks (removed norm layers) leave gaps instead of shifting the rest.
    """
    order: list[str] = []
    for names in sequences:
        previous = None
        for name in names:
            if name not in order:
                at = 0 if previous is None else order.index(previous) + 1
                order.insert(at, name)
            previous = name
    return order


def layer_figure(layers: pd.DataFrame, labels: Sequence[str], title: str, log: bool) -> Figure:
    """One line per variant over the union of their layers (in forward order)."""
    groups = [layers[layers["variant"] == label].sort_values("index") for label in labels]
    groups = [(label, g) for label, g in zip(labels, groups, strict=True) if not g.empty]
    if not groups:
        raise ConfigError("no variant has values to plot")
    order = layer_order([list(g["layer"]) for _, g in groups])
    position = {name: i for i, name in enumerate(order)}
    fig = Figure(figsize=(max(6.0, 0.45 * len(order) + 2.0), 3.8))
    ax = fig.add_subplot()
    for label, g in groups:
        finite = g[g["value"].map(lambda v: math.isfinite(v) and (v > 0 or not log))]
        ax.plot([position[n] for n in finite["layer"]], finite["value"], marker="o", label=label)
    ax.set_xticks(
        range(len(order)), [n or "(model)" for n in order], rotation=60, ha="right", fontsize=7
    )
    ax.set_yscale("log" if log else "linear")
    ax.set_xlabel("layer (forward order)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _figures(result: AuditResult) -> str:
    layers = result.layers
    labels = [r.label for r in result.runs]
    parts = []
    for measure, quantity, title, log in LAYER_PLOTS:
        rows = layers[(layers["measure"] == measure) & (layers["quantity"] == quantity)]
        try:
            with literal_figure_text():
                data = _png(layer_figure(rows, labels, title, log))
        except ConfigError:
            parts.append(f"<p>{escape(title)}: not measured for any variant.</p>")
            continue
        except Exception as err:  # one figure that cannot be drawn is that figure's problem
            parts.append(f"<p>{escape(title)}: could not be drawn ({escape(repr(err))}).</p>")
            continue
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)}</figcaption></figure>"
        )
    return "".join(parts)


def _details(result: AuditResult) -> str:
    details = result.details
    if details.empty:
        return "<p>No scalar details.</p>"
    details = details.assign(item=details["measure"] + "." + details["key"])
    wide = details.pivot(index="item", columns="variant", values="value")
    labels = [r.label for r in result.runs if r.label in wide.columns]
    rows = [[item, *(number(wide.at[item, v]) for v in labels)] for item in wide.index]
    return _html_table(["detail", *labels], rows)


def _norm_layers(result: AuditResult) -> str:
    if not result.norm_layers:
        return "<p>No normalization layers found; variants that need them were skipped.</p>"
    return _html_table(["layer", "kind"], [[n or "(model)", k] for n, k in result.norm_layers])


def _problems(result: AuditResult) -> str:
    rows = [[v, "variant skipped", reason] for v, reason in result.skipped.items()]
    rows += [[r.label, f"{m} failed", e] for r in result.runs for m, e in r.failed.items()]
    rows += [[r.label, f"{m} not taken", e] for r in result.runs for m, e in r.skipped.items()]
    return _html_table(["variant", "what", "why"], rows) if rows else "<p>None.</p>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } figure { margin: 1em 0; } img { max-width: 100%; }
"""


def html_section(result: AuditResult) -> str:
    """The audit as one HTML ``<section>`` (strings escaped, figures embedded)."""
    s = result.settings
    head = ["variant", *result.measures]
    table = _html_table(head, [[label, *cells] for label, cells in _cells(result)])
    notes = "".join(f"<li>{escape(n)}</li>" for n in result.notes)
    return (
        f'<section class="audit"><h2>Audit of {escape(result.name)}</h2>'
        f"<p>Data {escape(str(s['data']))}, {s['n']} samples, loss {escape(s['loss'])}, "
        f"seed {s['seed']}, {result.seconds:.1f} s.</p>"
        f"<h3>Normalization layers</h3>{_norm_layers(result)}"
        f"<h3>Headline values</h3>{table}"
        f"<h3>Per-layer figures</h3>{_figures(result)}"
        f"<h3>Details</h3>{_details(result)}"
        f"<h3>Skipped and failed</h3>{_problems(result)}"
        f"<h3>Notes</h3><ul>{notes}</ul></section>"
    )


def write_html(result: AuditResult, path: str | Path) -> Path:
    """A self-contained HTML page of ``result`` at ``path`` (written under a temporary
    name and renamed when complete)."""
    path = Path(path)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>normscope audit: {escape(result.name)}</title><style>{_STYLE}</style>"
        f"</head><body><h1>normscope audit</h1><p>normscope "
        f"{escape(normscope.__version__)}, written {stamp}.</p>{html_section(result)}"
        "</body></html>"
    )
    try:
        write_atomic(path, page)
    except OSError as err:
        raise ConfigError(f"cannot write the audit page {str(path)!r}: {err}.") from None
    return path
