"""Jacobian of a normalization map and exponential Lipschitz bounds (hiddenpower2025).

Normalizing a vector x ∈ Rⁿ (the n batch values of one feature for batch norm, the n
features of one sample for layer norm), y = (x − mean x) / σ with σ = √(var x + ε) and
var the biased variance, has the Jacobian

    ∂y/∂x = (1/σ) (I − 11ᵀ/n − ẑ ẑᵀ/n),   ẑ = y = (x − mean x) / σ.

Its eigenvalues are 0 (on 1), ε / (var + ε) (on ẑ) and 1 on the remaining n − 2
directions, so its spectral norm is exactly 1/σ when n ≥ 3, never above 1/√ε. A stack of K
normalization layers whose inputs have standard deviations σ_k multiplies the input
Lipschitz bound by Π_k 1/σ_k: exponential in K when σ_k > 1, and no reduction at
unit-variance initialization. Per-layer Lipschitz constants multiply into bounds that
overflow float64 at large depth, so products are carried as sums of logs.

Example:
    >>> product_bound([1.0] * 1000)  # log of e^1000, which float64 cannot hold
    1000.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from normscope.errors import ConfigError


def _spread(x: np.ndarray, eps: float) -> tuple[np.ndarray, float, float]:
    """Return (x as a vector, biased variance, σ = √(var + ε)), checking the input."""
    v = np.asarray(x, dtype=float)
    if v.ndim != 1 or v.size < 1 or not np.all(np.isfinite(v)):
        raise ConfigError(f"x must be a finite 1-D vector, got shape {v.shape}")
    if not eps >= 0:
        raise ConfigError(f"eps must be >= 0, got {eps!r}")
    var = float(np.mean((v - v.mean()) ** 2))
    if var + eps <= 0:
        raise ConfigError("x is constant and eps = 0: normalization is undefined; pass eps > 0")
    return v, var, math.sqrt(var + eps)


def normalization_jacobian(x: np.ndarray, *, eps: float = 0.0) -> np.ndarray:
    """(1/σ)(I − 11ᵀ/n − ẑẑᵀ/n), the Jacobian of x ↦ (x − mean x)/√(var x + ε) (hiddenpower2025)."""
    v, _, sigma = _spread(x, eps)
    n = v.size
    z = (v - v.mean()) / sigma
    return (np.eye(n) - np.full((n, n), 1.0 / n) - np.outer(z, z) / n) / sigma


def normalization_jacobian_norm(x: np.ndarray, *, eps: float = 0.0) -> float:
    """Spectral norm of :func:`normalization_jacobian`: 1/σ for n ≥ 3, σ = √(var + ε) ≥ √ε.

    For n ≤ 2 no unit-eigenvalue direction is left and the norm is the larger of the
    eigenvalues on ẑ, ε/((var + ε) σ), and 0.
    """
    v, var, sigma = _spread(x, eps)
    unit_directions = v.size - 1 - (1 if var > 0 else 0)
    if unit_directions >= 1:
        return 1.0 / sigma
    return eps / (var + eps) / sigma if var > 0 else 0.0


def product_bound(log_gains: Iterable[float]) -> float:
    """log Π_l L_l = Σ_l log L_l for per-layer Lipschitz constants given as logs (hiddenpower2025).

    Summed in log space with ``math.fsum`` so depth never overflows: the result is finite
    unless a layer's gain is itself infinite (+inf) or zero (−inf).

    Raises:
        ValueError: a NaN log gain, or both +inf and −inf (a 0 · ∞ product).
    """
    logs = [float(g) for g in log_gains]
    if any(math.isnan(g) for g in logs):
        raise ConfigError("a log gain is NaN; check the per-layer Lipschitz estimates")
    if math.inf in logs and -math.inf in logs:
        raise ConfigError("log gains hold both +inf and -inf: the product 0 · inf is undefined")
    if math.inf in logs or -math.inf in logs:
        return math.inf if math.inf in logs else -math.inf
    return math.fsum(logs)


def log_reduction_factor(sigmas: Iterable[float], *, eps: float = 0.0) -> float:
    """log Π_k 1/√(σ_k² + ε): the predicted cut of the input-Lipschitz bound (hiddenpower2025).

    σ_k is the standard deviation of the input to the k-th of K normalization layers;
    ``math.exp`` of the result is the factor itself (negative log: a reduction).
    """
    values = np.asarray(list(sigmas), dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not eps >= 0:
        raise ConfigError(f"sigmas must be finite and >= 0 and eps >= 0, got {values}, {eps!r}")
    if np.any(values**2 + eps <= 0):
        raise ConfigError("a normalization layer with sigma = 0 and eps = 0 has no finite gain")
    return -0.5 * math.fsum(np.log(values**2 + eps))
