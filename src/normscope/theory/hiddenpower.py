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

:func:`typical_log_gain` is the mean-field version for a random MLP: the log of the gain
√(E‖J v‖² / ‖v‖²) that a typical input direction v gets through the whole net, layer by
layer, with the normalization layers' 1/σ_k where σ_k is the spread their input actually
has. For positively homogeneous activations (identity, ReLU) the spread of a
normalization layer's input is the gain of the stretch before it, so the norm cancels
that stretch and the net's gain depends only on the layers after the last norm; for
saturating activations (tanh) the forward spread saturates while the Jacobian keeps
growing, and a norm cancels only part of it.

Example:
    >>> product_bound([1.0] * 1000)  # log of e^1000, which float64 cannot hold
    1000.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from normscope.errors import ConfigError
from normscope.theory.activations import ActivationLike, activation
from normscope.theory.gaussian import (
    DEFAULT_NODES,
    gaussian_expectation,
    gaussian_expectation_2d,
)

#: Normalizations :func:`typical_log_gain` models: what a normalization's input spread is
#: measured over (``True``: the batch, after subtracting each feature's batch mean;
#: ``False``: the features of one sample), and whether it subtracts a mean.
_SPREAD_OVER_BATCH = {"batch": True, "layer": False, "rms": False}


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


def typical_log_gain(
    depth: int,
    activation_fn: ActivationLike,
    *,
    gain: float,
    norm_sites: Iterable[int] = (),
    norm: str = "batch",
    input_variance: float = 1.0,
    n_nodes: int = DEFAULT_NODES,
) -> float:
    """log √(E‖J v‖²/‖v‖²) of a wide random MLP at initialization (hiddenpower2025).

    The net: ``depth`` hidden layers ``h_l = φ(N(W_l h_{l−1}))`` (N the normalization at
    the hidden layers in ``norm_sites``, 0-based, identity elsewhere; normalization before
    the activation) and a linear output layer, every W ~ N(0, gain² / fan_in), no biases,
    inputs of variance ``input_variance`` per coordinate, independent across samples.
    Layers are counted as square: a layer with fan_out ≠ fan_in multiplies the squared
    gain by fan_out / fan_in more (C / M for C outputs after width M), a constant factor
    that shifts log L and leaves its slopes in depth or K unchanged.
    Mean-field recursion over q₁ (second moment of a pre-activation) and q₂ (covariance
    of two samples' pre-activations): a layer multiplies the squared gain by gain²,
    a normalization layer by 1/σ² with σ² = q₁ − q₂ (batch norm: the spread over the
    batch) or q₁ (layer and RMS norm: over the features), after which q₁ = 1 and q₂ = 0
    (batch norm) or q₂/q₁ (layer, RMS norm); the activation multiplies it by E[φ′(u)²],
    u ~ N(0, q₁). Identity and ReLU give gain^(layers after the last norm + 1) up to the
    O(1) factors of the norms; tanh saturates, so its norms cancel only part of the gain.

    Args:
        depth: number of hidden layers, >= 1.
        activation_fn: activation name (``theory.activation_names()``) or (φ, φ′).
        gain: weight scale of every layer (σ_w times the init's scale), > 0.
        norm_sites: the normalized hidden layers (0-based).
        norm: ``"batch"``, ``"layer"`` or ``"rms"``.
        input_variance: per-coordinate variance of the inputs, > 0.

    Raises:
        ConfigError: depth < 1, gain or input variance not positive, a site outside
            0 … depth − 1, or an unmodelled norm.

    Example:
        >>> import math
        >>> round(typical_log_gain(8, "identity", gain=3.0, norm_sites=[0, 1]) / math.log(3), 6)
        7.0
    """
    sites = _check_gain_inputs(depth, gain, norm_sites, norm, input_variance)
    phi, dphi = activation(activation_fn)
    g2 = gain * gain
    qhat1, qhat2 = float(input_variance), 0.0
    log_gain2 = 0.0
    for layer in range(depth):
        q1, q2 = g2 * qhat1, g2 * qhat2
        log_gain2 += math.log(g2)
        if layer in sites:
            spread = q1 - q2 if _SPREAD_OVER_BATCH[norm] else q1
            log_gain2 -= math.log(spread)
            q1, q2 = (1.0, 0.0) if _SPREAD_OVER_BATCH[norm] else (1.0, q2 / q1)
        log_gain2 += math.log(gaussian_expectation(lambda u: dphi(u) ** 2, q1, n_nodes=n_nodes))
        qhat1 = gaussian_expectation(lambda u: phi(u) ** 2, q1, n_nodes=n_nodes)
        # the covariance of two samples matters only to a batch norm further on
        if _SPREAD_OVER_BATCH[norm] and any(site > layer for site in sites):
            qhat2 = gaussian_expectation_2d(phi, phi, q1, q2, n_nodes=n_nodes)
    return 0.5 * (log_gain2 + math.log(g2))


def _check_gain_inputs(
    depth: int, gain: float, norm_sites: Iterable[int], norm: str, input_variance: float
) -> set[int]:
    if int(depth) != depth or depth < 1:
        raise ConfigError(f"depth must be an integer >= 1, got {depth!r}")
    if not (gain > 0 and math.isfinite(gain)):
        raise ConfigError(f"gain must be a positive finite number, got {gain!r}")
    if not (input_variance > 0 and math.isfinite(input_variance)):
        raise ConfigError(f"input_variance must be positive and finite, got {input_variance!r}")
    if norm not in _SPREAD_OVER_BATCH:
        raise ConfigError(
            f"norm {norm!r} is not modelled; use one of {', '.join(sorted(_SPREAD_OVER_BATCH))}"
        )
    sites = {int(s) for s in norm_sites}
    if any(not 0 <= s < depth for s in sites):
        raise ConfigError(f"norm_sites must lie in 0 … {depth - 1}, got {sorted(sites)}")
    return sites
