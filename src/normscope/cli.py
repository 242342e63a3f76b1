"""The ``normscope`` command.

User errors (:class:`~normscope.errors.NormscopeError`) print their message and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.padding import Padding
from rich.table import Table

import normscope
from normscope import progress
from normscope.auditing.command import register as register_audit
from normscope.errors import ConfigError, NormscopeError, unknown_name
from normscope.measurement import Measurement
from normscope.sanitize import console as new_console

# Every string printed through Rich passes this one step: markup escaped and terminal
# control characters shown as escapes (see normscope.sanitize).
from normscope.sanitize import rich_markup as escape
from normscope.terminal import activity, add_key_column, fits

# Every run computes on one thread (bit-identical results whatever the worker count),
# so the machine is used by running one worker per core.
DEFAULT_WORKERS = os.cpu_count() or 1
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        "-w",
        help="Worker processes (0: run inline). Each run uses one thread, so the default "
        "is one worker per CPU core.",
    ),
]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure what normalization layers do to neural networks.",
)
console = new_console()
err_console = new_console(stderr=True)


LIST_KINDS = ("nets", "norms", "data", "measures", "all")
BACKENDS = ("local", "ray")
EXPORT_FORMATS = ("csv", "parquet")


def _choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else an UnknownNameError with the closest.

    Choices are plain strings checked here rather than click choices, so that a wrong
    one gets the same "did you mean" as every other name in normscope.
    """
    if value not in choices:
        raise unknown_name(what, value, choices)
    return value


def _version(value: bool) -> None:
    if value:
        console.print(f"normscope {normscope.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Measure what normalization layers do to neural networks."""


def _catalogue() -> dict[str, list[tuple[str, str]]]:
    from normscope import data, measures, nets

    return {
        "nets": [(a, "architecture") for a in nets.ARCHITECTURES],
        "norms": [(k, "normalization kind") for k in nets.NORM_KINDS],
        "data": [(d, "data source") for d in data.names()],
        "measures": [
            (n, f"[{measures.info(n).family}] {measures.info(n).summary}") for n in measures.names()
        ],
    }


@app.command("list")
def list_(
    kind: Annotated[str, typer.Argument(help=f"What to list: {', '.join(LIST_KINDS)}.")] = "all",
) -> None:
    """List the available networks, normalization kinds, data sources or measures."""
    _choice("list kind", kind, LIST_KINDS)
    catalogue = _catalogue()
    for section, rows in catalogue.items():
        if kind not in ("all", section):
            continue
        table = Table(title=section, show_header=False, box=None)
        for name, text in rows:
            table.add_row(f"[bold]{name}[/bold]", text)
        console.print(table)


DB_HELP = "Results store (SQLite file)."
DEFAULT_DB = Path("results") / "normscope.db"
StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help=f"{DB_HELP} [default: {DEFAULT_DB}]", show_default=False, metavar="PATH"
    ),
]
StoreArgument = Annotated[
    Path | None,
    typer.Argument(help="The results store, as --db (both spellings work).", show_default=False),
]


def _store(positional: Path | None, option: Path | None) -> Path:
    """The store of a command that takes it as ``--db PATH`` or as its first argument."""
    if positional is not None and option is not None and positional != option:
        raise ConfigError(
            f"two results stores given ({str(positional)!r} and --db {str(option)!r}); "
            "give the store once, as --db PATH."
        )
    return option or positional or DEFAULT_DB


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Experiment spec (TOML).")],
    db: Annotated[Path, typer.Option("--db", help=DB_HELP)] = DEFAULT_DB,
    workers: WorkersOption = DEFAULT_WORKERS,
    backend: Annotated[str, typer.Option(help="Where runs execute: local or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (with --backend ray).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run again the runs that failed before.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            help="Also write each run as it finishes to KIND:FOLDER, KIND one of "
            "tensorboard, csv, wandb (offline); repeatable.",
        ),
    ] = None,
) -> None:
    """Run an experiment; runs already in the store are skipped (resume).

    Exits 1 when a run failed (its error and traceback are stored), 2 on a user error.
    """
    from normscope.experiments import Store, load_spec, run_experiment
    from normscope.loggers import parse_target

    _choice("backend", backend, BACKENDS)
    log_to = [parse_target(target) for target in log or []]
    parsed, text = load_spec(spec)
    with Store(db) as store:
        summary = run_experiment(
            parsed,
            store,
            spec_toml=text,
            source=str(spec),
            workers=workers,
            backend=backend,
            address=address,
            retry_failed=retry_failed,
            quiet=quiet,
            console=err_console,
            log_to=log_to,
        )
    console.print(
        f"[bold]{escape(summary.experiment)}[/bold]: {summary.planned} runs planned, "
        f"{summary.skipped} already stored, {summary.ok} finished, {summary.failed} failed "
        f"({summary.seconds:.1f} s); results in {escape(str(db))}"
    )
    for run_hash, error in summary.failures[:10]:
        err_console.print(f"[red]failed[/red] {run_hash}: {escape(error)}")
    if summary.failures:
        err_console.print("rerun with --retry-failed to try the failed runs again")
        raise typer.Exit(1)


def _parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, object]:
    """``key=value`` strings; values are read as TOML (numbers, booleans, lists) when
    they parse as such, else kept as text."""
    import tomllib

    out: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes key=value, got {pair!r}.")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _show_measurement(m: Measurement) -> None:
    import numpy as np

    console.print(f"[bold]{escape(m.name)}[/bold] = [bold cyan]{m.value:.6g}[/bold cyan]")
    table = Table(title="details", show_header=False, box=None)
    for key, value in m.details.items():
        if isinstance(value, np.ndarray | list | tuple):
            arr = np.asarray(value).ravel()
            fmt = "{:.4g}" if np.issubdtype(arr.dtype, np.number) else "{}"
            shown = ", ".join(fmt.format(v) for v in arr[:6]) + (" ..." if arr.size > 6 else "")
            table.add_row(escape(str(key)), escape(f"array of {arr.size}: [{shown}]"))
        elif isinstance(value, dict):
            shown = ", ".join(
                f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                for k, v in list(value.items())[:6]
            )
            table.add_row(
                escape(str(key)), escape(f"{{{shown}{' ...' if len(value) > 6 else ''}}}")
            )
        else:
            table.add_row(escape(str(key)), escape(str(value)))
    if m.details:
        console.print(table)
    for title, items in (("cost", m.cost), ("settings", m.settings)):
        rows = Table(title=title, show_header=False, box=None)
        for key, value in items.items():
            rows.add_row(escape(str(key)), escape(str(value)))
        console.print(rows)
    for note in m.notes:
        console.print(f"note: {escape(note)}")


@contextmanager
def _measuring(name: str, quiet: bool) -> Iterator[None]:
    """Progress on stderr while one measure runs: what is measured, then its products
    done and expected once it takes a few seconds; nothing when ``quiet``."""
    if quiet:
        yield
        return
    with activity(err_console, f"measuring {name} ...") as update, progress.reporting(to=update):
        yield


@app.command()
def measure(
    name: Annotated[str, typer.Argument(help="Measure name (see `normscope list measures`).")],
    net: Annotated[str, typer.Option(help="Architecture.")] = "mlp",
    norm: Annotated[str, typer.Option(help="Normalization kind.")] = "none",
    width: Annotated[int, typer.Option(help="Hidden width.")] = 64,
    depth: Annotated[int, typer.Option(help="Depth.")] = 2,
    net_option: Annotated[
        list[str] | None, typer.Option("--net-option", help="Other net field, key=value.")
    ] = None,
    data: Annotated[str, typer.Option(help="Data set.")] = "digits",
    n: Annotated[int | None, typer.Option(help="Samples.")] = 256,
    split: Annotated[str, typer.Option(help="Data split.")] = "train",
    data_option: Annotated[
        list[str] | None, typer.Option("--data-option", help="Data option, key=value.")
    ] = None,
    loss: Annotated[str, typer.Option(help="cross_entropy or mse.")] = "cross_entropy",
    bn_mode: Annotated[str, typer.Option(help="train or eval.")] = "train",
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or float64.")] = "float32",
    seed: Annotated[int, typer.Option(help="Seed of network and data.")] = 0,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Measure option, key=value.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress line on stderr.")
    ] = False,
) -> None:
    """Take one measure of one network on one data set.

    A measurement that takes more than a few seconds shows its progress on stderr:
    products done and expected, and the time left. Under torchrun
    (``torchrun --nproc-per-node N -m normscope measure ...``) the measurement spans the N
    processes, each with its shard of the batches; rank 0 prints.
    """
    from normscope.distributed.launch import rank_from_env, torchrun_group
    from normscope.experiments.execute import build_subject, run_notes
    from normscope.experiments.plan import plan
    from normscope.experiments.spec import spec_from_dict
    from normscope.measures import get

    raw = {
        "name": "measure",
        "subject": {
            "net": {
                "arch": net,
                "norm": norm,
                "width": width,
                "depth": depth,
                "seed": seed,
                **_parse_pairs(net_option, "--net-option"),
            },
            "data": {
                "name": data,
                "n": n,
                "split": split,
                "seed": seed,
                **_parse_pairs(data_option, "--data-option"),
            },
            "loss": loss,
            "bn_mode": bn_mode,
            "batch_size": batch_size,
            "dtype": dtype,
        },
        "measure": [{"name": name, **_parse_pairs(option, "--option")}],
    }
    if n is None:
        del raw["subject"]["data"]["n"]
    config = plan(spec_from_dict(raw, source="command line"), source="command line")[0].config
    writer = rank_from_env() == 0
    try:
        with torchrun_group() as (group, device), _measuring(name, quiet or not writer):
            subject = build_subject(config, process_group=group, device=device)
            result = get(name)(subject, **config["measures"][0]["options"])
    except NormscopeError:
        if not writer:  # every rank raises the same error; rank 0 prints it
            raise typer.Exit(2) from None
        raise
    if writer:
        _show_measurement(result)
        for note in run_notes(config):
            console.print(f"note: {escape(note)}")


CLAIM_COLUMNS = ("result", "source", "measured", "expected", "points", "R²", "message")


def _source_cell(r) -> str:
    """Where a claim comes from, a finding against the paper in bold."""
    source = escape(r.source_label)
    return f"[bold yellow]{source}[/bold yellow]" if r.contradicts else source


def _claim_cells(r) -> list[str]:
    style = "green" if r.passed else "bold red"
    return [
        f"[{style}]{r.verdict}[/{style}]",
        _source_cell(r),
        "" if r.measured != r.measured else f"{r.measured:.4g}",
        escape(r.expected),
        str(r.n),
        "" if r.r2 is None else f"{r.r2:.3f}",
        escape(r.message),
    ]


def _claims_table(title: str, claims: list) -> Table:
    table = Table(title=escape(title))
    add_key_column(table, "claim", [r.name for r in claims])
    for col in CLAIM_COLUMNS:
        table.add_column(col, no_wrap=col != "message")
    for r in claims:
        table.add_row(escape(r.name), *_claim_cells(r))
    return table


def _print_claims(title: str, claims: list) -> None:
    """One table of claims when it fits the terminal (the message column wraps, the claim
    column never does), else one block per claim: verdict and name, then its numbers."""
    if not claims:
        console.print(f"{escape(title)}: no claims")
        return
    table = _claims_table(title, claims)
    if fits(console, table):
        console.print(table)
        return
    console.print(f"[bold]{escape(title)}[/bold]")
    for r in claims:
        verdict, source, measured, expected, points, r2, message = _claim_cells(r)
        named = f"{verdict} [bold]{escape(r.name)}[/bold]"
        console.print(f"{named} ({source})" if source else named)
        numbers = f"measured {measured or '—'}, expected {expected}, {points} points"
        for line in (numbers + (f", R² {r2}" if r2 else ""), message):
            if line:
                console.print(Padding(line, (0, 0, 0, 5), expand=False))


@app.command()
def check(
    db: StoreArgument = None,
    db_option: StoreOption = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
) -> None:
    """Check the claims of stored experiments; exit status 1 if any claim fails."""
    from normscope.experiments.claims import check_store

    results = check_store(_store(db, db_option), experiment)
    for name, claims in results.items():
        _print_claims(name, claims)
    total = sum(len(c) for c in results.values())
    failed = sum(not r.passed for claims in results.values() for r in claims)
    console.print(f"{total - failed} of {total} claims pass")
    if failed:
        raise typer.Exit(1)


@app.command()
def report(
    db: StoreArgument = None,
    db_option: StoreOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "results"
    )
    / "report.html",
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
) -> None:
    """Write a self-contained HTML report (figures, claims, failures, specs)."""
    from normscope.report import build_report

    path = build_report(_store(db, db_option), output, experiment)
    console.print(f"report written to {escape(str(path))}")


@app.command()
def export(
    db: StoreArgument = None,
    db_option: StoreOption = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="File format: csv or parquet.")
    ] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
) -> None:
    """Export the tidy results table (one row per measurement) as CSV or Parquet."""
    from normscope.experiments.frames import default_export_path, export_table

    _choice("export format", format, EXPORT_FORMATS)
    store = _store(db, db_option)
    out = output or default_export_path(store, format)
    rows = export_table(store, out, format, experiment)
    console.print(f"{rows} rows written to {escape(str(out))}")


def _list_reproductions() -> None:
    from normscope import reproductions

    table = Table(title="reproductions", show_header=False, box=None)
    for name in reproductions.names():
        table.add_row(f"[bold]{name}[/bold]", escape(reproductions.paper(name)))
    console.print(table)


@app.command()
def reproduce(
    name: Annotated[
        str, typer.Argument(help="Reproduction to run, or 'all' (see --list).")
    ] = "all",
    quick: Annotated[
        bool, typer.Option("--quick", help="The small size (about 2 minutes each).")
    ] = False,
    db: Annotated[Path, typer.Option("--db", help=DB_HELP)] = DEFAULT_DB,
    report: Annotated[Path, typer.Option("--report", help="HTML report to write.")] = Path(
        "results"
    )
    / "report.html",
    workers: WorkersOption = DEFAULT_WORKERS,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a claim fails.")] = False,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the reproductions and their papers.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Run the shipped reproductions of the papers, check their claims, write the report.

    A claim that fails is printed as FAIL and is a result: the exit status is 0 unless
    --strict. Exits 1 when a run crashed, 2 on a user error.
    """
    from normscope.outputs import check_output
    from normscope.reproductions.runner import reproduce as run_reproductions
    from normscope.reproductions.runner import write_report

    check_output(report, store=db, flag="--report")
    if list_only:
        _list_reproductions()
        return
    outcomes = run_reproductions(
        name, db, quick=quick, workers=workers, quiet=quiet, console=err_console
    )
    for outcome in outcomes:
        s = outcome.summary
        console.print(
            f"[bold]{escape(s.experiment)}[/bold]: {s.planned} runs, {s.skipped} already "
            f"stored, {s.ok} finished, {s.failed} failed ({s.seconds:.1f} s)"
        )
        for run_hash, error in s.failures[:10]:
            err_console.print(f"[red]run failed[/red] {run_hash}: {escape(error)}")
    for outcome in outcomes:
        _print_claims(outcome.reproduction.experiment, outcome.claims)
    path = write_report(db, report, outcomes)
    failed = sum(o.failed_claims for o in outcomes)
    total = sum(len(o.claims) for o in outcomes)
    console.print(
        f"{total - failed} of {total} claims pass; results in {escape(str(db))}, "
        f"report in {escape(str(path))}"
    )
    if any(o.summary.failures for o in outcomes):
        err_console.print("some runs crashed; rerun the same command to retry them")
        raise typer.Exit(1)
    if strict and failed:
        raise typer.Exit(1)


register_audit(app)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes of the command-line parser, whichever click Typer runs on.

    Typer 0.29 raises the classes of its own copy of click (all subclasses of
    ``typer.TyperException``); earlier releases raise those of the ``click`` package.
    """
    types: list[type[BaseException]] = []
    if hasattr(typer, "TyperException"):
        types.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.ClickException)
    return tuple(types)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def usage_message(err: BaseException) -> str | None:
    """The one-line message for a usage error from any layer, or None for a bug.

    normscope's own errors carry their message; the parser's (a missing argument, an
    unknown option, a value of the wrong type) name the command's help; a pydantic
    validation error that escaped our wrapping lists each field and problem.
    """
    if isinstance(err, NormscopeError):
        return _one_line(str(err))
    if isinstance(err, _usage_error_types()):
        ctx = getattr(err, "ctx", None)
        command = getattr(ctx, "command_path", None)
        hint = f" (see '{command} --help')" if command else ""
        return _one_line(err.format_message()) + hint
    if type(err).__module__.startswith("pydantic") and hasattr(err, "errors"):
        problems = [
            f"{'.'.join(map(str, e.get('loc', ()))) or 'input'}: {e.get('msg', '')}"
            for e in err.errors()
        ]
        return _one_line("; ".join(problems))
    return None


def _exit_code(err: BaseException) -> int | None:
    """The status of an exception that only ends the program (typer.Exit, help shown)."""
    if isinstance(err, typer.Exit):
        return err.exit_code
    code = getattr(err, "exit_code", None)
    if type(err).__name__ == "Exit" and isinstance(code, int):  # click.exceptions.Exit
        return code
    return None


def main() -> None:
    """Entry point: run the app, turning every usage error into one line and exit status 2.

    Whichever layer raises it (the command-line parser, pydantic, normscope), a usage
    error prints ``error: <message>`` on one line of stderr, with no traceback.
    """
    try:
        # Without standalone mode click returns typer.Exit's code instead of raising it.
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished runs are stored; run the same command to resume")
        sys.exit(130)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `normscope` alone: show the help
            console.print(err.format_message(), markup=False, highlight=False)
            sys.exit(0)
        status = _exit_code(err)
        if status is not None:
            sys.exit(status)
        message = usage_message(err)
        if message is None:
            raise
        err_console.print(
            f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True, highlight=False
        )
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
