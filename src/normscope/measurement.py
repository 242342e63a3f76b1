"""The Measurement type every measure returns, and the cost meter that fills it."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from normscope import progress


@dataclass
class Measurement:
    """One measured quantity.

    ``value`` is the headline number (a float; ``inf`` with a note when it overflows),
    ``details`` holds floats and numpy arrays (eigenvalues, per-layer values...),
    ``cost`` holds ``seconds`` and counts of the products that were evaluated
    (``hvp``, ``jvp``, ``vjp``, ``forward``, ``backward``), ``settings`` every option
    that shaped the number (including ``bn_mode`` and ``dtype``), ``notes`` anything a
    reader must know to interpret it.
    """

    name: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.value = float(self.value)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)

    def __repr__(self) -> str:
        return f"Measurement({self.name}={self.value:.6g}, cost={self.cost.get('seconds', 0):.3g}s)"


class CostMeter:
    """Counts products and wall time while a measure runs.

    Operators call ``meter.add("hvp", k)``; the measure ends with ``meter.cost()``. Every
    count also reaches :mod:`normscope.progress`, and a measure that knows how many
    products it may make says so with ``meter.expect(n)``, so that a long measurement
    can show how far it is.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._start = time.perf_counter()

    def add(self, kind: str, n: int = 1) -> None:
        self.counts[kind] += n
        progress.advance(kind, n)

    def expect(self, n: int) -> None:
        """At most ``n`` more products will be made (for the progress line only)."""
        progress.expect(n)

    def cost(self) -> dict[str, float]:
        out: dict[str, float] = {"seconds": time.perf_counter() - self._start}
        out.update({k: float(v) for k, v in sorted(self.counts.items())})
        return out
