"""The ``normscope`` command.

User errors (:class:`~normscope.errors.NormscopeError`) print their message and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import normscope
from normscope.errors import NormscopeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Measure what normalization layers do to neural networks.",
)
console = Console()
err_console = Console(stderr=True)


class ListKind(StrEnum):
    nets = "nets"
    norms = "norms"
    data = "data"
    measures = "measures"
    all = "all"


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
    kind: Annotated[ListKind, typer.Argument(help="What to list.")] = ListKind.all,
) -> None:
    """List the available networks, normalization kinds, data sources or measures."""
    catalogue = _catalogue()
    for section, rows in catalogue.items():
        if kind not in (ListKind.all, ListKind(section)):
            continue
        table = Table(title=section, show_header=False, box=None)
        for name, text in rows:
            table.add_row(f"[bold]{name}[/bold]", text)
        console.print(table)


def main() -> None:
    """Entry point: run the app, turning user errors into a message and exit status 2."""
    try:
        app(standalone_mode=False)
    except NormscopeError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}")
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as err:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2)
        raise
