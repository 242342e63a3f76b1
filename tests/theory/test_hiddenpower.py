"""Normalization Jacobian and log-space Lipschitz products (hiddenpower2025)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normscope.theory import (
    log_reduction_factor,
    normalization_jacobian,
    normalization_jacobian_norm,
    product_bound,
)


def _vector(n, scale, seed):
    rng = np.random.default_rng(seed)
    return 0.7 + scale * rng.standard_normal(n)


def _layer_norm(eps):
    return lambda v: F.layer_norm(v, v.shape, eps=eps)


def _batch_norm(eps):
    # One feature, the n values of a batch: training-mode batch statistics.
    return lambda v: F.batch_norm(v[:, None], None, None, training=True, eps=eps)[:, 0]


# torch's batch norm refuses eps = 0 in training mode, so it is checked at eps > 0 only.
@pytest.mark.parametrize(
    ("make_map", "eps"),
    [
        (_layer_norm, 0.0),
        (_layer_norm, 1e-5),
        (_layer_norm, 0.3),
        (_batch_norm, 1e-5),
        (_batch_norm, 0.3),
    ],
)
def test_jacobian_matches_autograd_of_torch_normalization(make_map, eps):
    x = _vector(7, 2.0, seed=3)
    autograd = torch.autograd.functional.jacobian(make_map(eps), torch.tensor(x))
    np.testing.assert_allclose(normalization_jacobian(x, eps=eps), autograd.numpy(), atol=1e-10)


@pytest.mark.parametrize(("scale", "eps"), [(0.1, 0.0), (3.0, 0.0), (5.0, 1e-2), (1e-4, 1e-3)])
def test_spectral_norm_is_one_over_sigma(scale, eps):
    x = _vector(9, scale, seed=4)
    sigma = math.sqrt(np.var(x) + eps)
    spectral = np.linalg.norm(normalization_jacobian(x, eps=eps), 2)
    assert spectral == pytest.approx(1 / sigma, rel=1e-6)
    assert normalization_jacobian_norm(x, eps=eps) == pytest.approx(spectral, rel=1e-12)
    if eps > 0:
        assert spectral <= 1 / math.sqrt(eps)


def test_two_values_leave_only_the_eps_direction():
    x = np.array([0.2, 1.4])
    spectral = np.linalg.norm(normalization_jacobian(x, eps=0.1), 2)
    assert normalization_jacobian_norm(x, eps=0.1) == pytest.approx(spectral, rel=1e-12)


def test_constant_input_without_eps_is_rejected():
    with pytest.raises(ValueError, match="eps"):
        normalization_jacobian(np.ones(4))


def test_product_bound_at_depth_1000_stays_finite_in_log_space():
    log_gains = [1.0] * 1000
    assert math.prod(math.exp(g) for g in log_gains) == math.inf  # the naive product overflows
    assert product_bound(log_gains) == 1000.0
    assert product_bound(np.full(1000, 1.0)) == 1000.0


def test_product_bound_infinite_gain_and_invalid_logs():
    assert product_bound([1.0, math.inf]) == math.inf
    assert product_bound([1.0, -math.inf]) == -math.inf
    with pytest.raises(ValueError, match="NaN"):
        product_bound([1.0, math.nan])
    with pytest.raises(ValueError, match="0 · inf"):
        product_bound([math.inf, -math.inf])


def test_reduction_factor_is_exponential_in_the_number_of_norm_layers():
    for k in (1, 10, 2000):
        assert log_reduction_factor([2.0] * k) == pytest.approx(-k * math.log(2.0), rel=1e-12)
    assert log_reduction_factor([1.0] * 50) == 0.0
    assert log_reduction_factor([0.0], eps=1e-4) == pytest.approx(-0.5 * math.log(1e-4))
