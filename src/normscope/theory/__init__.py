"""Closed-form and mean-field predictions to overlay on measurements.

Pure math on numpy/scipy. karakida2019: Fisher spectrum of wide random nets
(:func:`order_parameters`, :func:`fisher_predictions`). meterez2024: isometry gap and its
decay (:func:`isometry_gap`, :func:`isometry_gap_bound`). hiddenpower2025: Jacobian of a
normalization map and log-space Lipschitz products (:func:`normalization_jacobian`,
:func:`product_bound`).
"""

from normscope.theory.activations import activation, activation_names
from normscope.theory.gaussian import gaussian_expectation, gaussian_expectation_2d
from normscope.theory.hiddenpower import (
    log_reduction_factor,
    normalization_jacobian,
    normalization_jacobian_norm,
    product_bound,
)
from normscope.theory.karakida import (
    FisherPrediction,
    OrderParameters,
    fisher_predictions,
    lambda_max_output_batchnorm,
    order_parameters,
)
from normscope.theory.meterez import isometry_gap, isometry_gap_bound

__all__ = [
    "FisherPrediction",
    "OrderParameters",
    "activation",
    "activation_names",
    "fisher_predictions",
    "gaussian_expectation",
    "gaussian_expectation_2d",
    "isometry_gap",
    "isometry_gap_bound",
    "lambda_max_output_batchnorm",
    "log_reduction_factor",
    "normalization_jacobian",
    "normalization_jacobian_norm",
    "order_parameters",
    "product_bound",
]
