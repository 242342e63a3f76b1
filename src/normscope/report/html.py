"""A self-contained HTML report of a results store.

One section per experiment: description, run counts, the figures of its ``[[plot]]``
tables (PNG, embedded as base64 and also written beside the page), the claims table,
the failed runs with their tracebacks, and the spec itself. Every string that comes
from a spec, a model or the store is HTML-escaped.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd

import normscope
from normscope.errors import NormscopeError, StoreError
from normscope.experiments.claims import ClaimResult, evaluate_all
from normscope.experiments.frames import load, require_experiment, wide
from normscope.experiments.spec import Spec, parse_spec
from normscope.experiments.store import Store
from normscope.report.figures import draw, png_bytes

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.PASS { color: #11722b; font-weight: bold; } .FAIL { color: #b00020; font-weight: bold; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; } img { max-width: 100%; }
.problem { color: #b00020; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "experiment"


def _table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.4g}"


def _claims_html(results: list[ClaimResult]) -> str:
    if not results:
        return "<p>This experiment states no claims.</p>"
    rows = [
        [
            escape(r.name),
            escape(r.type),
            f'<span class="{r.verdict}">{r.verdict}</span>',
            _number(r.measured),
            escape(r.expected),
            str(r.n),
            _number(r.r2),
            escape(r.message),
        ]
        for r in results
    ]
    head = ["claim", "type", "result", "measured", "expected", "points", "R²", "message"]
    return _table(head, rows)


def _failures_html(runs: list[dict]) -> str:
    failed = [r for r in runs if r["status"] == "failed"]
    if not failed:
        return "<p>No run failed.</p>"
    rows = [
        [
            f"<code>{escape(r['hash'])}</code>",
            escape(r["error"] or ""),
            f"<details><summary>traceback</summary><pre>{escape(r['traceback'] or '')}</pre>"
            "</details>",
        ]
        for r in failed
    ]
    return _table(["run", "error", "details"], rows)


def _figures_html(spec: Spec, table: pd.DataFrame, out: Path, stem: str) -> str:
    parts = []
    for i, plot in enumerate(spec.plot):
        caption = escape(plot.title or f"{plot.y} against {plot.x}")
        try:
            png = png_bytes(draw(plot, table))
        except NormscopeError as err:
            parts.append(f'<p class="problem">Figure {i + 1} ({caption}): {escape(str(err))}</p>')
            continue
        name = f"{stem}-{_slug(spec.name)}-{i + 1}.png"
        (out / name).write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption} ({escape(name)})</figcaption></figure>"
        )
    return "".join(parts) or "<p>This experiment defines no figures.</p>"


def _section(index: int, name: str, store: Store, path: Path, out: Path, stem: str) -> str:
    toml = store.spec_toml(name)
    runs = store.runs(name)
    counts = {s: sum(r["status"] == s for r in runs) for s in ("ok", "failed", "pending")}
    head = f'<section id="experiment-{index}"><h2>{escape(name)}</h2>'
    try:
        spec = parse_spec(toml, source=f"{path}:{name}", check=False)
    except NormscopeError as err:
        return (
            head + f'<p class="problem">{escape(str(err))}</p><pre>{escape(toml)}</pre></section>'
        )
    table = wide(load(path, name))
    meta = f"<p>{escape(spec.description)}</p>" if spec.description else ""
    if spec.paper:
        meta += f"<p>Paper: {escape(spec.paper)}</p>"
    meta += (
        f"<p>Runs: {len(runs)} planned, {counts['ok']} finished, {counts['failed']} "
        f"failed, {counts['pending']} not run.</p>"
    )
    return (
        head
        + meta
        + "<h3>Figures</h3>"
        + _figures_html(spec, table, out, stem)
        + "<h3>Claims</h3>"
        + _claims_html(evaluate_all(spec.claim, table))
        + "<h3>Failed runs</h3>"
        + _failures_html(runs)
        + f"<h3>Spec</h3><pre>{escape(toml)}</pre></section>"
    )


def build_report(db: str | Path, output: str | Path, experiment: str | None = None) -> Path:
    """Write the HTML report of store ``db`` to ``output`` (PNG figures beside it)."""
    db, output = Path(db), Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(
            f"cannot create the report folder {str(output.parent)!r}: {err}."
        ) from None
    with Store(db, readonly=True) as store:
        names = [experiment] if experiment is not None else store.experiments()
        if experiment is not None:
            require_experiment(store, experiment)
        sections = [
            _section(i, n, store, db, output.parent, output.stem) for i, n in enumerate(names)
        ]
    nav = "".join(
        f'<li><a href="#experiment-{i}">{escape(n)}</a></li>' for i, n in enumerate(names)
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>normscope report</title><style>{_STYLE}</style></head><body>"
        f"<h1>normscope report</h1><p>Store {escape(str(db))}, normscope "
        f"{escape(normscope.__version__)}, written {stamp}.</p>"
        f"<ul>{nav}</ul>{''.join(sections) or '<p>The store holds no experiments.</p>'}"
        "</body></html>"
    )
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as err:
        raise StoreError(f"cannot write the report {str(output)!r}: {err}.") from None
    return output
