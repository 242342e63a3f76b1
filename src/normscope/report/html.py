"""A self-contained HTML report of a results store.

Laid out like a paper's figure page: first every claim's verdict at a glance (with where
it comes from: paper, theory or finding), then one section per experiment: its claims
table, description and run counts, the figures of its ``[[plot]]`` tables (PNG, embedded
as base64 and also written beside the page; axes in words, a caption under each), the
failed runs with their tracebacks, and the spec itself. Every string that comes from a
spec, a model or the store is HTML-escaped.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd

import normscope
from normscope.errors import ConfigError, NormscopeError, StoreError
from normscope.experiments.claims import ClaimResult, evaluate_all
from normscope.experiments.frames import load, require_experiment, wide
from normscope.experiments.spec import PlotSpec, Spec, parse_spec
from normscope.experiments.store import Store
from normscope.outputs import check_output, write_atomic
from normscope.report.figures import draw, png_bytes
from normscope.sanitize import file_stem, literal_figure_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.PASS { color: #11722b; font-weight: bold; } .FAIL { color: #b00020; font-weight: bold; }
.against { color: #a04a00; font-weight: bold; } .basis { color: #555; font-size: 0.85em; }
figcaption { font-size: 0.9em; max-width: 60em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; } img { max-width: 100%; }
.problem { color: #b00020; }
"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.4g}"


def _verdict_html(r: ClaimResult) -> str:
    return f'<span class="{r.verdict}">{r.verdict}</span>'


def _source_html(r: ClaimResult) -> str:
    if r.contradicts:
        return f'<span class="against">{escape(r.source_label)}</span>'
    return escape(r.source_label) or "not given"


def _claims_html(results: list[ClaimResult]) -> str:
    if not results:
        return "<p>This experiment states no claims.</p>"
    rows = [
        [
            escape(r.name)
            + (f'<br><span class="basis">{escape(r.basis)}</span>' if r.basis else ""),
            _verdict_html(r),
            _source_html(r),
            _number(r.measured),
            escape(r.expected),
            str(r.n),
            _number(r.r2),
            escape(r.message),
        ]
        for r in results
    ]
    head = ["claim", "result", "source", "measured", "expected", "points", "R²", "message"]
    return _table(head, rows)


def _summary_html(checked: list[tuple[int, str, list[ClaimResult]]]) -> str:
    """Every claim of the page in one table: the verdicts at a glance."""
    rows = [
        [
            f'<a href="#experiment-{index}">{escape(name)}</a>',
            escape(r.name),
            _verdict_html(r),
            _source_html(r),
            _number(r.measured),
            escape(r.expected),
        ]
        for index, name, results in checked
        for r in results
    ]
    if not rows:
        return ""
    passed = sum(r.passed for _, _, results in checked for r in results)
    head = ["experiment", "claim", "result", "source", "measured", "expected"]
    return (
        f"<h2>Claims at a glance</h2><p>{passed} of {len(rows)} claims pass. Source: "
        "<em>paper</em> (the paper states it), <em>theory</em> (derived from its formulas), "
        "<em>finding</em> (measured beyond or against the paper).</p>" + _table(head, rows)
    )


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


def _png(plot: PlotSpec, table: pd.DataFrame, labels: dict[str, str]) -> bytes:
    """The figure as PNG; any failure to draw it (a plot column missing, text matplotlib
    cannot lay out) is a NormscopeError about this one figure."""
    import matplotlib.pyplot as plt

    open_before = set(plt.get_fignums())
    try:
        with literal_figure_text():
            return png_bytes(draw(plot, table, labels))
    except Exception as err:
        for number in set(plt.get_fignums()) - open_before:
            plt.close(number)
        if isinstance(err, NormscopeError):
            raise
        raise ConfigError(f"matplotlib could not draw it ({type(err).__name__}: {err})") from None


def _figures_html(spec: Spec, table: pd.DataFrame, out: Path, stem: str, db: Path) -> str:
    parts = []
    for i, plot in enumerate(spec.plot):
        title = escape(plot.title or f"{plot.y} against {plot.x}")
        try:
            png = _png(plot, table, spec.labels)
        except NormscopeError as err:
            parts.append(f'<p class="problem">Figure {i + 1} ({title}): {escape(str(err))}</p>')
            continue
        name = f"{stem}-{file_stem(spec.name)}-{i + 1}.png"
        try:
            write_atomic(check_output(out / name, store=db), png)
        except OSError as err:
            raise StoreError(f"cannot write the figure {str(out / name)!r}: {err}.") from None
        data = base64.b64encode(png).decode("ascii")
        caption = f" {escape(plot.caption)}" if plot.caption else ""
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{title}">'
            f"<figcaption><b>Figure {i + 1}.</b> {title}.{caption} "
            f"<small>({escape(name)})</small></figcaption></figure>"
        )
    return "".join(parts) or "<p>This experiment defines no figures.</p>"


@dataclass
class _Experiment:
    """One stored experiment, read once: its spec (None when it cannot be parsed, with
    the error), results frame and checked claims."""

    index: int
    name: str
    toml: str
    runs: list[dict]
    spec: Spec | None
    problem: str
    table: pd.DataFrame
    claims: list[ClaimResult]
    unplanned: int


def _read(index: int, name: str, store: Store, path: Path) -> _Experiment:
    toml = store.spec_toml(name)
    runs = store.runs(name)
    hidden = store.unplanned(name)
    try:
        spec = parse_spec(toml, source=f"{path}:{name}", check=False)
    except NormscopeError as err:
        return _Experiment(index, name, toml, runs, None, str(err), pd.DataFrame(), [], hidden)
    table = wide(load(path, name))
    claims = evaluate_all(spec.claim, table)
    return _Experiment(index, name, toml, runs, spec, "", table, claims, hidden)


def _section(e: _Experiment, out: Path, stem: str, db: Path) -> str:
    head = f'<section id="experiment-{e.index}"><h2>{escape(e.name)}</h2>'
    if e.spec is None:
        return (
            head + f'<p class="problem">{escape(e.problem)}</p><pre>{escape(e.toml)}</pre>'
            "</section>"
        )
    spec = e.spec
    counts = {s: sum(r["status"] == s for r in e.runs) for s in ("ok", "failed", "pending")}
    meta = f"<p>Paper: {escape(spec.paper)}</p>" if spec.paper else ""
    about = f"<p>{escape(spec.description)}</p>" if spec.description else ""
    about += (
        f"<p>Runs: {len(e.runs)} planned, {counts['ok']} finished, {counts['failed']} "
        f"failed, {counts['pending']} not run.</p>"
    )
    if e.unplanned:
        meta += (
            f'<p class="problem">{e.unplanned} stored run(s) of an earlier spec of this name '
            "are not in its current plan and are not shown.</p>"
        )
    return (
        head
        + meta
        + "<h3>Claims</h3>"
        + _claims_html(e.claims)
        + "<h3>Setup</h3>"
        + about
        + "<h3>Figures</h3>"
        + _figures_html(spec, e.table, out, stem, db)
        + "<h3>Failed runs</h3>"
        + _failures_html(e.runs)
        + f"<h3>Spec</h3><pre>{escape(e.toml)}</pre></section>"
    )


def build_report(db: str | Path, output: str | Path, experiment: str | None = None) -> Path:
    """Write the HTML report of store ``db`` to ``output`` (PNG figures beside it).

    No file written may be the store or its ``-wal`` / ``-shm`` file
    (:class:`~normscope.errors.ConfigError` before anything is written); each file is
    written under a temporary name and renamed when complete. A figure that cannot be
    drawn is shown as that figure's problem; the rest of the report is written.
    """
    db, output = Path(db), check_output(output, store=db)
    with Store(db, readonly=True) as store:  # a store that cannot be read creates no folder
        names = [experiment] if experiment is not None else store.experiments()
        if experiment is not None:
            require_experiment(store, experiment)
        experiments = [_read(i, n, store, db) for i, n in enumerate(names)]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(
            f"cannot create the report folder {str(output.parent)!r}: {err}."
        ) from None
    summary = _summary_html([(e.index, e.name, e.claims) for e in experiments])
    sections = [_section(e, output.parent, output.stem, db) for e in experiments]
    nav = "".join(
        f'<li><a href="#experiment-{i}">{escape(n)}</a></li>' for i, n in enumerate(names)
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>normscope report</title><style>{_STYLE}</style></head><body>"
        f"<h1>normscope report</h1><p>Store {escape(str(db))}, normscope "
        f"{escape(normscope.__version__)}, written {stamp}.</p>"
        f"{summary}<ul>{nav}</ul>"
        f"{''.join(sections) or '<p>The store holds no experiments.</p>'}"
        "</body></html>"
    )
    try:
        write_atomic(output, page)
    except OSError as err:
        raise StoreError(f"cannot write the report {str(output)!r}: {err}.") from None
    return output
