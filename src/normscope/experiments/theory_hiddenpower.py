"""Theory columns for the hiddenpower2025 reproduction: where a run's MLP is normalized, and
the log of the gain a typical input direction gets through it at initialization.

Registered as ``hiddenpower_gain``; columns

- ``num_norm_layers``: K, the number of normalized hidden layers;
- ``first_k``: 1 when the normalized layers are the first K (placement [0, ..., K-1]),
  else 0; ``evenly_spread``: 1 when they are ``nets.placement.evenly_spread(K, depth)``
  (the ``num_norm`` placement, which always normalizes the last hidden layer), else 0.
  K = 0 and K = depth are both;
- ``log_gain``: the mean-field log gain of a typical input direction through the net at
  initialization (``theory.hiddenpower.typical_log_gain``): every Gaussian layer
  W ~ N(0, g² / fan_in), g = weight_scale × sigma_w, multiplies it by g, the activation
  by √E[φ′(u)²], and a normalization layer by 1/σ_k, σ_k the spread its input has
  (hiddenpower2025). For identity and ReLU, σ_k is the forward gain of the stretch since
  the previous norm, so the product telescopes to about g^(layers after the last norm):
  exponential in K when the norms are the first K layers, the same for every K ≥ 1 when
  the last hidden layer is normalized. For tanh the forward spread saturates while the
  Jacobian keeps growing, so norms cancel only part of the gain. nan where the theory
  does not model the net (non-Gaussian init, norm after the activation, norms other
  than batch, layer and RMS);
- ``gain``: exp(log_gain), to draw beside measured Lipschitz constants (inf on overflow).
"""

from __future__ import annotations

import math
from typing import Any

from normscope.errors import ConfigError
from normscope.experiments import theory_columns
from normscope.nets.placement import evenly_spread
from normscope.theory.activations import activation_names
from normscope.theory.hiddenpower import typical_log_gain

_MODELLED_NORMS = ("none", "batch", "layer", "rms")


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


def _log_gain(config: dict[str, Any], depth: int, sites: list[int]) -> float:
    """The mean-field log gain of the run's MLP, nan where the theory does not model it."""
    net = config["subject"]["net"]
    activation = net.get("activation", "relu")
    modelled = (
        net.get("init", "gaussian") == "gaussian"
        and net.get("order", "pre") == "pre"
        and net.get("norm", "none") in _MODELLED_NORMS
        and activation in activation_names()
    )
    if not modelled:
        return math.nan
    gain = net.get("weight_scale", 1.0) * net.get("sigma_w", 1.0)
    if gain <= 0:
        return -math.inf
    scale = float(config["subject"]["data"].get("input_scale", 1.0))
    return typical_log_gain(
        depth,
        activation,
        gain=gain,
        norm_sites=sites,
        norm=net["norm"] if sites else "batch",
        input_variance=scale * scale,
    )


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
    log_gain = _log_gain(config, depth, sites)
    return {
        "num_norm_layers": float(k),
        "first_k": float(sites == list(range(k))),
        "evenly_spread": float(k == 0 or sites == list(evenly_spread(k, depth))),
        "log_gain": log_gain,
        "gain": math.exp(log_gain)
        if log_gain < 709.0
        else (math.inf if log_gain > 0 else math.nan),
    }
