"""Errors a user can cause. Every message says what was wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NormscopeError(Exception):
    """Base class of every error caused by input to normscope (the CLI exits 2 on these)."""


class UnknownNameError(NormscopeError, LookupError):
    """A name (net, norm, data set, measure, field) that normscope does not know."""


class ConfigError(NormscopeError, ValueError):
    """An option or spec value that is out of range or inconsistent."""


class ShapeError(NormscopeError, ValueError):
    """Model and data do not fit together."""


class DataError(NormscopeError, ValueError):
    """Data that is empty, non-finite, badly labelled or missing from disk."""


class ModelError(NormscopeError, ValueError):
    """A model that cannot be measured as given (no parameters, non-finite weights...)."""


class NonFiniteError(NormscopeError, ArithmeticError):
    """A computation met NaN or inf (an overflowing network, a diverged model)."""


class StoreError(NormscopeError):
    """A results store that cannot be opened, read or written."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists the valid names and the closest one."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(
        f"unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(valid)}."
    )
