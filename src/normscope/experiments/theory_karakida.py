"""Theory columns for the karakida2019 reproduction: mean-field Fisher statistics of the
run's network, from ``normscope.theory.karakida``.

Registered as ``karakida_fisher``; columns ``lambda_max``, ``mean`` and ``bulk``, and
``t_over_m`` = T / M, the number of samples per unit of width (karakida2019's condition for
batch norm in the last layer is on it: λ_max stays O(1) in M when T / M stays fixed).
"""

from __future__ import annotations

import math
from typing import Any

from normscope.errors import ConfigError
from normscope.experiments import theory_columns
from normscope.theory.karakida import fisher_predictions, order_parameters

_WEIGHT_VARIANCE = {"gaussian": None, "kaiming": 2.0}


def _sigma_w2(net: dict[str, Any]) -> float:
    """σ_w² of W ~ N(0, σ_w² / fan_in): ``nets.init.draw_weight`` times ``weight_scale``."""
    init = net.get("init", "gaussian")
    if init not in _WEIGHT_VARIANCE:
        raise ConfigError(
            f"karakida_fisher models Gaussian weights (init 'gaussian' or 'kaiming'), got "
            f"init {init!r}."
        )
    base = _WEIGHT_VARIANCE[init]
    sigma2 = net.get("sigma_w", 1.0) ** 2 if base is None else base
    return sigma2 * net.get("weight_scale", 1.0) ** 2


def _widths(net: dict[str, Any]) -> list[int]:
    width, depth = net.get("width", 64), net.get("depth", 2)
    return list(width) if isinstance(width, list) else [int(width)] * depth


def _output_mean_subtracted(net: dict[str, Any]) -> bool | None:
    """True for batch norm on the output only, False for no norm; None for norms the
    mean-field formulas do not model (hidden batch norm, layer norm ...)."""
    norm, placement = net.get("norm", "none"), net.get("placement", "all")
    if norm == "none" or placement == "none":
        return False
    if norm == "batch" and placement == "output":
        return True
    return None


def _data_sizes(config: dict[str, Any]) -> tuple[int, int, float]:
    data = config["subject"]["data"]
    if data["name"] != "gaussian":
        raise ConfigError(
            f"karakida_fisher needs independent Gaussian inputs (data 'gaussian'), got "
            f"{data['name']!r}."
        )
    n = data.get("n") or 1000
    outputs = (
        data.get("num_classes", 10)
        if data.get("task", "classification") == ("classification")
        else data.get("output_dim", 1)
    )
    return int(n), int(outputs), float(data.get("input_scale", 1.0)) ** 2


@theory_columns.register("karakida_fisher")
def karakida_fisher(config: dict[str, Any]) -> dict[str, float]:
    """Mean-field Fisher predictions of karakida2019 for the run's MLP on Gaussian data.

    With L = depth + 1 weight layers, hidden widths M_l (α_l = M_l / M, M the first hidden
    width, α_0 = input dim / M), σ_w² from the init, σ_b² (0 without biases), q̂_1^0 the
    input variance (``input_scale²``) and q̂_2^0 = 0 (independent inputs), T samples and C
    outputs: ``lambda_max`` = αM((T−1)/T κ_2 + κ_1/T) and ``mean`` = κ_1 C / M for the plain
    net; for batch norm on the output only, the mean-subtracted spectrum (bulk level
    α(κ_1 − κ_2)M/T, mean (C/M)(κ_1 − κ_2)(T − 1)/T; the division by the batch standard
    deviation is not modelled). ``bulk`` = (αM/T)(κ_1 − κ_2). Norms the formulas do not
    model (hidden batch norm, layer norm) get only ``t_over_m``.
    """
    net, data = config["subject"]["net"], config["subject"]["data"]
    widths = _widths(net)
    n, outputs, q1_input = _data_sizes(config)
    ratio = {"t_over_m": n / widths[0]}
    centred = _output_mean_subtracted(net)
    if centred is None:
        return ratio
    input_dim = int(data.get("dim", 100))
    big_m = widths[0]
    sigma_b2 = net.get("sigma_b", 0.0) ** 2 if net.get("bias", True) else 0.0
    order = order_parameters(
        len(widths) + 1,
        net.get("activation", "relu"),
        sigma_w2=_sigma_w2(net),
        sigma_b2=sigma_b2,
        q1_input=q1_input,
        alphas=[input_dim / big_m, *(w / big_m for w in widths)],
    )
    pred = fisher_predictions(order, big_m, n, outputs, output_mean_subtracted=centred)
    out = {"lambda_max": pred.lambda_max, "mean": pred.mean, "bulk": pred.bulk}
    return ratio | {k: v for k, v in out.items() if math.isfinite(v)}
