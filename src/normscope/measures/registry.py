"""The registry of named measures: ``get(name)``, ``names()``, ``info(name)``.

A measure is a plain function ``f(subject, **options) -> Measurement`` with keyword-only
options that all have defaults. It registers itself with :func:`register`; a new measure
is a new file in this package (every module here is imported when the package is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from normscope.errors import unknown_name
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
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"measure {name!r} is registered twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = MeasureInfo(
            name, fn, family, paper, summary, needs_labels, dict(quick or {})
        )
        return fn

    return add


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
