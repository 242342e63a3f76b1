"""Output that suits both a terminal and a log file.

Progress goes to a stderr console. On a terminal it is drawn live (a Rich bar or
spinner); when stderr is a file or a pipe it is written as plain lines, one per step,
so that a redirected command shows what it is doing instead of nothing, or a bar drawn
once at the end.

Tables are printed whole only when they fit the console's width (:func:`fits`); a key
column (:func:`add_key_column`) is never wrapped or cut, and callers switch to a
narrower layout when the table does not fit.

Example::

    >>> from rich.console import Console
    >>> from rich.table import Table
    >>> table = Table()
    >>> add_key_column(table, "claim", ["no norm: Fisher lambda_max grows like width"])
    >>> table.add_column("message")
    >>> table.add_row("no norm: Fisher lambda_max grows like width", "slope 0.95 in range")
    >>> fits(Console(width=80), table), fits(Console(width=40), table)
    (True, False)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from normscope.sanitize import rich_markup, terminal


def add_key_column(table: Table, header: str, keys: Iterable[str]) -> None:
    """Add the column that names each row: never wrapped, never cut (at least as wide as
    its widest key), so that :func:`fits` says no rather than let it be shortened."""
    width = max([cell_len(header), *(cell_len(k) for k in keys)])
    table.add_column(header, no_wrap=True, min_width=width, style="bold")


def fits(console: Console, table: Table) -> bool:
    """Whether ``table`` prints at ``console``'s width with every cell whole: text columns
    wrapped at most down to their longest word, key columns at their widest cell."""
    unbounded = console.options.update_width(10**6)
    return console.measure(table, options=unbounded).minimum <= console.width


def _line(console: Console, start: float, text: str) -> None:
    console.out(f"[{time.perf_counter() - start:7.1f} s] {terminal(text)}", highlight=False)


@contextmanager
def counted(
    console: Console, description: str, total: int, *, quiet: bool = False
) -> Iterator[Callable[..., None]]:
    """Progress of ``total`` items: yields ``advance(failed, count=1)``, called as items
    finish with the number of failures so far.

    On a terminal: a bar with counts, elapsed time and an estimate of the time left.
    Otherwise one line per item, e.g. ``[    3.2 s] tiny: 2/4 runs done, 0 failed``.
    ``quiet``: nothing at all.
    """
    if quiet:
        yield lambda failed, count=1: None
        return
    if console.is_terminal:
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        with bar:
            task = bar.add_task(rich_markup(description), total=total, failed=0)
            yield lambda failed, count=1: bar.update(task, advance=count, failed=failed)
        return
    start, done = time.perf_counter(), 0

    def advance(failed: int, count: int = 1) -> None:
        nonlocal done
        done += count
        _line(console, start, f"{description}: {done}/{total} runs done, {failed} failed")

    _line(console, start, f"{description}: {total} runs to do")
    yield advance


@contextmanager
def activity(console: Console, text: str) -> Iterator[Callable[[str], None]]:
    """Open-ended work: yields ``update(text)`` to say what is being done now.

    On a terminal: a spinner showing the latest text. Otherwise one line per update,
    with the seconds since the start, e.g. ``[   12.4 s] sharpness of as_given/train``.
    """
    if console.is_terminal:
        with console.status(rich_markup(text)) as status:
            yield lambda now: status.update(rich_markup(now))
        return
    start = time.perf_counter()
    _line(console, start, text)
    yield lambda now: _line(console, start, now)
