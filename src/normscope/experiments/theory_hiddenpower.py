"""Theory columns for the hiddenpower2025 reproduction: where a run's MLP is normalized, and
the log of the gain a typical input direction gets through it at initialization.

Registered as ``hiddenpower_gain``; columns

- ``num_norm_layers``: K, the number of normalized hidden layers;
- ``first_k``: 1 when the normalized layers are the first K (placement [0, ..., K-1]),
  else 0; ``evenly_spread``: 1 when they are ``nets.placement.evenly_spread(K, depth)``
  (the ``num_norm`` placement, which always normalizes the last hidden layer), else 0.
  K = 0 and K = depth are both;
- ``log_gain``: log of the product of per-layer gains with the normalization factors
  Π_k 1/σ_k of hiddenpower2025. A Gaussian layer W ~ N(0, (s σ_w)² / fan_in) multiplies
  the norm of a typical vector by g = s σ_w (E ||W x||² = g² ||x||²; g / √2 after a ReLU,
  which halves the second moment), so without normalization the gain is (depth + 1) log g
  (hidden layers and output layer), and a normalization layer whose input has standard
  deviation σ_k = g^(m_k) (m_k layers since the previous norm, inputs of unit variance)
  divides by σ_k (``theory.hiddenpower.log_reduction_factor``). The product telescopes to
  (layers after the last norm) × log g: exponential in K when the norms are the first K
  layers, and the same for every K ≥ 1 when the last hidden layer is normalized.
  nan for activations whose gain is not a constant factor (tanh, gelu, sin);
- ``gain``: exp(log_gain), to draw beside measured Lipschitz constants (inf on overflow).
"""

from __future__ import annotations

import math
from typing import Any

from normscope.errors import ConfigError
from normscope.experiments import theory_columns
from normscope.nets.placement import evenly_spread
from normscope.theory.hiddenpower import log_reduction_factor, product_bound

# Second-moment gain of the activation on a centred Gaussian input (identity 1, ReLU 1/2).
_MOMENT_GAIN = {"identity": 1.0, "relu": 0.5}


def _sites(net: dict[str, Any], depth: int) -> list[int]:
    """The normalized hidden layers (0-based) of an MLP net config."""
    if net.get("norm", "none") == "none":
        return []
    if net.get("num_norm") is not None:
        return list(evenly_spread(int(net["num_norm"]), depth))
    placement = net.get("placement", "all")
    if isinstance(placement, list):
        return sorted(int(i) for i in placement)
    if isinstance(placement, dict):
        return list(range(placement["every"] - 1, depth, placement["every"]))
    named = {"all": range(depth), "hidden": range(depth - 1), "last": [depth - 1]}
    return list(named.get(placement, []))


def _log_gain(net: dict[str, Any], depth: int, sites: list[int]) -> float:
    """(depth + 1) log g + log Π_k 1/σ_k, σ_k = g^(layers since the previous norm)."""
    moment = _MOMENT_GAIN.get(net.get("activation", "relu"))
    if net.get("init", "gaussian") != "gaussian" or moment is None:
        return math.nan
    gain = net.get("weight_scale", 1.0) * net.get("sigma_w", 1.0)
    if gain <= 0:
        return -math.inf
    log_g = math.log(gain) + 0.5 * math.log(moment)
    previous, sigmas = -1, []
    for site in sites:
        sigmas.append(math.exp(log_g * (site - previous)))
        previous = site
    return product_bound([log_g] * (depth + 1)) + log_reduction_factor(sigmas)


@theory_columns.register("hiddenpower_gain")
def hiddenpower_gain(config: dict[str, Any]) -> dict[str, float]:
    """K, the placement flags and the typical-gain prediction of an MLP (hiddenpower2025)."""
    net = config["subject"]["net"]
    if net.get("arch") != "mlp":
        raise ConfigError(
            f"hiddenpower_gain models MLPs, got arch {net.get('arch')!r}; drop this theory "
            "column for other architectures."
        )
    depth = int(net.get("depth", 2))
    sites = _sites(net, depth)
    k = len(sites)
    log_gain = _log_gain(net, depth, sites)
    return {
        "num_norm_layers": float(k),
        "first_k": float(sites == list(range(k))),
        "evenly_spread": float(k == 0 or sites == list(evenly_spread(k, depth))),
        "log_gain": log_gain,
        "gain": math.exp(log_gain)
        if log_gain < 709.0
        else (math.inf if log_gain > 0 else math.nan),
    }
