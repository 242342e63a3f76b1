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


class DistributedError(NormscopeError):
    """Processes of one measurement that disagree (other models, options) or failed."""


def closest_first(name: object, valid: Iterable[str]) -> list[str]:
    """``valid`` ordered by similarity to ``name`` (case-insensitive), most similar first.

    Equally similar names keep alphabetical order, so the order is stable.
    """
    key = str(name).lower()
    return sorted(
        sorted(valid), key=lambda v: -difflib.SequenceMatcher(None, key, v.lower()).ratio()
    )


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the valid name closest to ``name``, or ``""`` if none is.

    Case is ignored, so ``"Tru"`` finds ``"true"``.
    """
    by_lower = {}
    for v in sorted(valid):
        by_lower.setdefault(v.lower(), v)
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1)
    return f" Did you mean {by_lower[close[0]]!r}?" if close else ""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` that names the closest valid name and lists
    every valid one, closest first."""
    valid = list(valid)
    return UnknownNameError(
        f"unknown {kind} {name!r}.{did_you_mean(name, valid)} Valid {kind} names: "
        f"{', '.join(closest_first(name, valid))}."
    )
