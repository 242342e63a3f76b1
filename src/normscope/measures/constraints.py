"""What values a measure's option accepts, declared where the measure is registered.

A measure declares one constraint per option (scikit-learn's declared parameter
constraints); the registry checks every call against them before the measure runs, so
one check, with one message shape, guards every entry point (Python, specs, the CLI, the
Tracker, the audit). Each constraint also names values it refuses, from which
:mod:`normscope.testing` generates its invalid-option battery.

Example:
    >>> from normscope.measures.constraints import Integer, Optional, Real
    >>> Integer(low=1).allows(3), Integer(low=1).allows(0), Integer(low=1).allows(True)
    (True, False, False)
    >>> str(Real(low=0, low_open=True))
    'a finite number > 0'
    >>> str(Optional(Integer(low=1)))
    'None or an integer >= 1'
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Protocol


class Constraint(Protocol):
    """What an option accepts: ``allows(value)``, ``str()`` says what is allowed in words,
    ``refused()`` lists example values it refuses."""

    def allows(self, value: Any) -> bool: ...

    def refused(self) -> list[Any]: ...


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


@dataclass(frozen=True)
class Integer:
    """An integer (not a bool) in ``[low, high]``; a bound of ``None`` is open-ended."""

    low: int | None = None
    high: int | None = None

    def allows(self, value: Any) -> bool:
        return (
            _is_int(value)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
        )

    def __str__(self) -> str:
        return "an integer" + _interval(self.low, self.high, False, False)

    def refused(self) -> list[Any]:
        base = self.low if self.low is not None else 0
        out: list[Any] = [True, base + 0.5, str(base), None]
        if self.low is not None:
            out.append(self.low - 1)
        if self.high is not None:
            out.append(self.high + 1)
        return out


@dataclass(frozen=True)
class Real:
    """A finite real number (not a bool) in the interval from ``low`` to ``high``.

    ``low_open``/``high_open`` exclude the bound itself (``Real(low=0, low_open=True)``:
    strictly positive). NaN and infinities are always refused.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: Any) -> bool:
        if not _is_real(value) or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (
            value > self.high or (self.high_open and value == self.high)
        )

    def __str__(self) -> str:
        return "a finite number" + _interval(self.low, self.high, self.low_open, self.high_open)

    def refused(self) -> list[Any]:
        out: list[Any] = [math.nan, math.inf, -math.inf, True, "0.5", None]
        if self.low is not None:
            out.append(self.low if self.low_open else self.low - 1)
        if self.high is not None:
            out.append(self.high if self.high_open else self.high + 1)
        return out


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of names. A wrong name is an unknown name: the registry answers
    with :class:`~normscope.errors.UnknownNameError` and the closest valid one."""

    values: tuple[str, ...]

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def refused(self) -> list[Any]:
        first = self.values[0]
        return [first.capitalize() if first != first.capitalize() else first.upper(), 1, None]


@dataclass(frozen=True)
class Name:
    """A non-empty string naming something the measure looks up in the Subject (an input,
    a module): the lookup itself answers an unknown name with the valid ones."""

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and value != ""

    def __str__(self) -> str:
        return "a non-empty name"

    def refused(self) -> list[Any]:
        return ["", 1, None]


@dataclass(frozen=True)
class Flag:
    """``True`` or ``False`` (not 0, 1 or a string)."""

    def allows(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "True or False"

    def refused(self) -> list[Any]:
        return [1, "true", None]


@dataclass(frozen=True)
class Vectors:
    """Finite floating-point vectors as a numpy array or torch tensor, ``(dim,)`` or
    ``(j, dim)``. That ``dim`` is the number of parameters is checked by the measure."""

    def allows(self, value: Any) -> bool:
        import numpy as np
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray) or value.ndim not in (1, 2) or value.size == 0:
            return False
        return np.issubdtype(value.dtype, np.floating) and bool(np.isfinite(value).all())

    def __str__(self) -> str:
        return "finite float vectors (a numpy array or torch tensor of shape (dim,) or (j, dim))"

    def refused(self) -> list[Any]:
        import numpy as np

        return ["vectors", [[0.5]], np.full((1, 3), np.nan), np.zeros((1, 1, 3))]


@dataclass(frozen=True)
class Optional:
    """``None``, or a value ``inner`` allows."""

    inner: Constraint

    def allows(self, value: Any) -> bool:
        return value is None or self.inner.allows(value)

    def __str__(self) -> str:
        return f"None or {self.inner}"

    def refused(self) -> list[Any]:
        return [v for v in self.inner.refused() if v is not None]


SEED = Integer(low=0)
"""Every measure's ``seed``: a non-negative integer (what ``torch.Generator`` and NumPy
both take)."""

TOL = Real(low=0, high=1, low_open=True, high_open=True)
"""A relative tolerance: strictly between 0 and 1."""

COUNT = Integer(low=1)
"""A number of things (eigenpairs, probes, steps): at least 1."""

POSITIVE = Real(low=0, low_open=True)
"""A strictly positive finite number (a radius, a memory budget, a learning rate)."""
