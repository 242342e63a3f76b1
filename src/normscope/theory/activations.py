"""Activations and their derivatives as numpy functions, for the mean-field theory.

An activation is given by name (``identity``, ``relu``, ``tanh``, ``gelu``, ``sin``,
``erf``) or as a pair ``(phi, dphi)`` of vectorized numpy callables. ``gelu`` is the exact
one, u Φ(u) with Φ the standard normal CDF; ``erf`` is erf(u) itself (no rescaling).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from normscope.errors import ConfigError, UnknownNameError

Function = Callable[[np.ndarray], np.ndarray]
ActivationLike = str | tuple[Function, Function]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _identity(u: np.ndarray) -> np.ndarray:
    return np.asarray(u, dtype=float)


def _one(u: np.ndarray) -> np.ndarray:
    return np.ones_like(u, dtype=float)


def _relu(u: np.ndarray) -> np.ndarray:
    return np.maximum(u, 0.0)


def _step(u: np.ndarray) -> np.ndarray:
    return (np.asarray(u) > 0).astype(float)


def _dtanh(u: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(u) ** 2


def _ndtr(u: np.ndarray) -> np.ndarray:
    # scipy.special is imported on first use: it costs more to import than the rest of the
    # measures together, and the command line lists them without computing anything
    from scipy import special

    return special.ndtr(u)


def _erf(u: np.ndarray) -> np.ndarray:
    from scipy import special

    return special.erf(u)


def _gelu(u: np.ndarray) -> np.ndarray:
    return u * _ndtr(u)


def _dgelu(u: np.ndarray) -> np.ndarray:
    return _ndtr(u) + u * np.exp(-(u**2) / 2.0) * _INV_SQRT_2PI


def _derf(u: np.ndarray) -> np.ndarray:
    return 2.0 / np.sqrt(np.pi) * np.exp(-(u**2))


_ACTIVATIONS: dict[str, tuple[Function, Function]] = {
    "identity": (_identity, _one),
    "relu": (_relu, _step),
    "tanh": (np.tanh, _dtanh),
    "gelu": (_gelu, _dgelu),
    "sin": (np.sin, np.cos),
    "erf": (_erf, _derf),
}


def activation_names() -> list[str]:
    """Names accepted by :func:`activation`."""
    return sorted(_ACTIVATIONS)


def activation(spec: ActivationLike) -> tuple[Function, Function]:
    """Return ``(phi, dphi)`` for a name or pass a callable pair through.

    Raises:
        LookupError: unknown name (the message lists the valid ones).
        TypeError: neither a name nor a pair of callables.
    """
    if isinstance(spec, str):
        if spec not in _ACTIVATIONS:
            raise UnknownNameError(
                f"unknown activation {spec!r}; valid names: {', '.join(activation_names())}, "
                "or pass a pair (phi, dphi) of numpy callables"
            )
        return _ACTIVATIONS[spec]
    if isinstance(spec, tuple) and len(spec) == 2 and all(callable(f) for f in spec):
        return spec
    raise ConfigError(
        f"activation must be a name ({', '.join(activation_names())}) or a pair "
        f"(phi, dphi) of numpy callables, got {spec!r}"
    )
