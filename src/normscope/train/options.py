"""The options of :func:`normscope.train.train` and their one check.

``train()`` checks its options here before it touches the model, and an experiment
spec's ``[train]`` table is checked here for every sweep point before anything runs, so
a bad value is refused the same way from Python and from a spec: an unknown name with
the closest valid one, a value of the wrong type (a quoted number, ``true`` for an
integer) or out of range (a negative or NaN learning rate or weight decay) raises
:class:`~normscope.errors.ConfigError` naming the option, the value and what is allowed.

Example::

    >>> from normscope.train.options import check_options
    >>> check_options({"lr": 0.1, "steps": 10})
    >>> check_options({"lr": "0.1"})
    Traceback (most recent call last):
    ...
    normscope.errors.ConfigError: lr must be a number, got '0.1' (str); write it without quotes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from normscope.errors import ConfigError, unknown_name

OPTIMIZERS: tuple[str, ...] = ("gd", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear_warmup")

_REALS: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "> 0"),
    # heavy-ball momentum of 1 or more never forgets a gradient: the iterates diverge
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
}
_COUNTS = ("steps", "warmup", "seed")
_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}

OPTIONS: tuple[str, ...] = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "wd_on",
    "steps",
    "schedule",
    "warmup",
    "seed",
)
"""Every option of ``train()`` that a spec's ``[train]`` table may set."""


def _quoted(value: Any) -> str:
    hint = "; write it without quotes" if isinstance(value, str) else ""
    return f"got {value!r} ({type(value).__name__}){hint}"


def _check_real(name: str, value: Any) -> None:
    test, allowed = _REALS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, {_quoted(value)}.")
    if not (math.isfinite(value) and test(value)):
        raise ConfigError(f"{name} must be a finite number {allowed}, got {value!r}.")


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, {_quoted(value)}.")
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}.")


def _check_wd_on(value: Any) -> None:
    patterns = [value] if isinstance(value, str) else value
    if (
        not isinstance(patterns, list | tuple)
        or not patterns
        or not all(isinstance(p, str) and p for p in patterns)
    ):
        raise ConfigError(
            f"wd_on must be 'all', 'scale_invariant', a parameter-name pattern or a non-empty "
            f"list of patterns, got {value!r}."
        )


def check_options(options: Mapping[str, Any], *, batch_size: int | None = None) -> None:
    """Raise :class:`~normscope.errors.ConfigError` (or
    :class:`~normscope.errors.UnknownNameError`) for the first invalid option.

    Args:
        options: option name -> value, any subset of :data:`OPTIONS`.
        batch_size: the Subject's mini-batch size (``"sgd"`` needs one).
    """
    for name, value in options.items():
        if name not in OPTIONS:
            raise unknown_name("training option", name, OPTIONS)
        if name in _REALS:
            _check_real(name, value)
        elif name in _COUNTS:
            _check_count(name, value)
        elif name in _CHOICES:
            if not isinstance(value, str) or value not in _CHOICES[name]:
                raise unknown_name(name, value, _CHOICES[name])
        else:
            _check_wd_on(value)
    if options.get("optimizer") == "sgd" and batch_size is None:
        raise ConfigError(
            "optimizer 'sgd' needs the Subject's batch_size (the mini-batch size); set "
            "batch_size or use optimizer 'gd'."
        )
