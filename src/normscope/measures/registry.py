"""The registry of named measures: ``get(name)``, ``names()``, ``info(name)``.

A measure is a plain function ``f(subject, **options) -> Measurement`` with keyword-only
options that all have defaults. It registers itself with :func:`register`; a new measure
is a new file in this package (every module here is imported when the package is).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from normscope.errors import NonFiniteError, unknown_name
from normscope.measurement import Measurement

MeasureFn = Callable[..., Measurement]


@dataclass(frozen=True)
class MeasureInfo:
    """What the registry knows of a measure.

    ``quick`` holds options that make the measure cheap on a small model; the shared
    conformance test and ``--budget``-limited runs use them.
    """

    name: str
    fn: MeasureFn
    family: str
    paper: str | None = None
    summary: str = ""
    needs_labels: bool = True
    quick: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MeasureInfo] = {}


def register(
    name: str,
    *,
    family: str,
    paper: str | None = None,
    needs_labels: bool = True,
    quick: dict[str, Any] | None = None,
) -> Callable[[MeasureFn], MeasureFn]:
    """Decorator that adds a measure function to the registry under ``name``."""

    def add(fn: MeasureFn) -> MeasureFn:
        if name in _REGISTRY and _REGISTRY[name].fn.__wrapped__ is not fn:
            raise ValueError(f"measure {name!r} is registered twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = MeasureInfo(
            name,
            _reporting_overflow(name, fn),
            family,
            paper,
            summary,
            needs_labels,
            dict(quick or {}),
        )
        return fn

    return add


def _reporting_overflow(name: str, fn: MeasureFn) -> MeasureFn:
    """``fn``, returning ``inf`` with a note instead of raising on a non-finite computation,
    and noting batch-norm layers in the epsilon regime.

    A measurement tool must not crash on a number it can report: an overflowing network
    (depth 1000, large weights) is a result, not an error; nor hide that a batch-norm
    layer is dividing by its epsilon rather than by the data's spread.
    """

    @functools.wraps(fn)
    def measure(subject, **options) -> Measurement:
        start = time.perf_counter()
        try:
            m = fn(subject, **options)
        except NonFiniteError as err:
            settings = {**subject.describe(), **options}
            cost = {"seconds": time.perf_counter() - start}
            m = Measurement(name, math.inf, {}, cost, settings, [f"reported as inf: {err}"])
        stalled = subject.batch_norm_in_epsilon_regime()
        if stalled:
            m.notes.append(
                f"batch norm in the epsilon regime in {stalled}: a channel's batch variance "
                "is below 10 x eps, so these layers do not normalize and their gain is about "
                "1/sqrt(eps)"
            )
        return m

    return measure


def get(name: str) -> MeasureFn:
    """The measure function registered as ``name``."""
    return info(name).fn


def info(name: str) -> MeasureInfo:
    if name not in _REGISTRY:
        raise unknown_name("measure", name, _REGISTRY)
    return _REGISTRY[name]


def names() -> list[str]:
    """All registered measure names, sorted."""
    return sorted(_REGISTRY)
