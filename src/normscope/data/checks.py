"""Validation of source options, with messages that show the bad value."""

from __future__ import annotations

from collections.abc import Iterable

from normscope.errors import ConfigError

TASKS = ("classification", "regression")


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return value


def positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def choice(name: str, value: object, valid: Iterable[str]) -> str:
    valid = tuple(valid)
    if value not in valid:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}.")
    return value
