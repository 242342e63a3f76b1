"""Progress of a single measurement: products done, products expected, time left.

A measure of a large model spends its time in Hessian-, Jacobian- or Fisher-vector
products. Every product is counted by the measure's :class:`~normscope.measurement.CostMeter`,
which calls :func:`advance`; a measure that knows its budget in advance (Lanczos steps,
trace probes) declares it with :func:`expect`. Nothing is shown unless a reporter is
installed with :func:`reporting` (the command line does, unless ``--quiet``): the
library stays silent inside other programs, and counting costs one context-variable
lookup per product when no one listens.

The registry runs every measure inside :func:`task`, so each measurement is one task
labelled with its name. A task shows nothing during its first ``delay`` seconds; after
that a terminal gets one line rewritten in place, anything else (a log file, a pipe) a
plain line every ``interval`` seconds::

    sharpness: 40/120 hvp products (upper bound), 12 s, at most 24 s left

``expected`` is an upper bound for iterative solvers that stop when they converge, and
the time left is estimated from the mean time of a product so far.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> with reporting(out, delay=0.0, interval=0.0):
    ...     with task("sharpness"):
    ...         expect(4)
    ...         for _ in range(4):
    ...             advance("hvp")
    >>> print(out.getvalue().splitlines()[-1])  # doctest: +ELLIPSIS
    sharpness: 4 hvp products in ... s
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TextIO

NOT_PRODUCTS = frozenset({"forward", "backward"})
"""Cost kinds that are passes, not operator products: they are not counted as progress."""


@dataclass
class Task:
    """One measurement in progress."""

    label: str
    expected: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    start: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def seconds_left(self) -> float | None:
        """Mean time per product so far times the products still expected, or None."""
        done = self.done
        if not self.expected or not done:
            return None
        return self.elapsed / done * max(self.expected - done, 0)

    def line(self, finished: bool = False) -> str:
        kinds = "/".join(sorted(self.counts)) or "no"
        if finished:
            return f"{self.label}: {self.done} {kinds} products in {self.elapsed:.0f} s"
        text = f"{self.label}: {self.done}"
        if self.expected:
            text += f"/{self.expected}"
        text += f" {kinds} products"
        if self.expected:
            text += " (upper bound)"
        text += f", {self.elapsed:.0f} s"
        left = self.seconds_left()
        if left is not None:
            text += f", at most {left:.0f} s left"
        return text


class LineReporter:
    """Shows a task's line once it has run ``delay`` seconds, at most every ``interval``
    seconds: rewritten in place on a terminal ``stream``, as plain lines on any other
    stream, or handed to ``to(line)`` (e.g. a spinner's ``update``)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        delay: float,
        interval: float | None,
        to: Callable[[str], None] | None = None,
    ) -> None:
        self.stream = stream
        self.to = to
        self.tty = to is None and bool(getattr(stream, "isatty", lambda: False)())
        self.delay = delay
        self.interval = interval if interval is not None else (0.2 if self.tty or to else 10.0)
        self._shown: dict[int, float] = {}

    def _write(self, text: str, *, final: bool) -> None:
        if self.to is not None:
            self.to(text)
            return
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K{chr(10) if final else ''}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    def update(self, t: Task) -> None:
        now = time.perf_counter()
        if now - t.start < self.delay:
            return
        last = self._shown.get(id(t))
        if last is not None and now - last < self.interval:
            return
        self._shown[id(t)] = now
        self._write(t.line(), final=False)

    def finish(self, t: Task) -> None:
        if self._shown.pop(id(t), None) is not None:
            self._write(t.line(finished=True), final=True)


_reporter: ContextVar[LineReporter | None] = ContextVar("normscope_progress", default=None)
_task: ContextVar[Task | None] = ContextVar("normscope_task", default=None)


@contextmanager
def reporting(
    stream: TextIO | None = None,
    *,
    delay: float = 2.0,
    interval: float | None = None,
    to: Callable[[str], None] | None = None,
) -> Iterator[LineReporter]:
    """Show the progress of every measurement taken inside on ``stream`` (stderr).

    ``delay``: seconds a measurement runs before anything is shown (quick ones print
    nothing); ``interval``: seconds between lines (default 0.2 on a terminal, where the
    line is rewritten, and 10 elsewhere); ``to``: hand each line to this function
    instead of writing it (a Rich status spinner's ``update``).
    """
    reporter = LineReporter(stream or sys.stderr, delay=delay, interval=interval, to=to)
    token = _reporter.set(reporter)
    try:
        yield reporter
    finally:
        _reporter.reset(token)


@contextmanager
def task(label: str) -> Iterator[Task | None]:
    """Count the products made inside as one task (None when no reporter listens)."""
    reporter = _reporter.get()
    if reporter is None:
        yield None
        return
    t = Task(label)
    token = _task.set(t)
    try:
        yield t
    finally:
        _task.reset(token)
        reporter.finish(t)


def expect(n: int) -> None:
    """The current task will make at most ``n`` more products."""
    t = _task.get()
    if t is not None:
        t.expected += int(n)


def advance(kind: str, n: int = 1) -> None:
    """``n`` products of ``kind`` (``"hvp"``, ``"jvp"``...) were made."""
    t = _task.get()
    if t is None or kind in NOT_PRODUCTS:
        return
    t.counts[kind] += n
    reporter = _reporter.get()
    if reporter is not None:
        reporter.update(t)
