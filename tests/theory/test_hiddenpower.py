"""Normalization Jacobian and log-space Lipschitz products (hiddenpower2025)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normscope.errors import ConfigError
from normscope.theory import (
    log_reduction_factor,
    normalization_jacobian,
    normalization_jacobian_norm,
    product_bound,
)
from normscope.theory.hiddenpower import typical_log_gain


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


def test_typical_gain_of_a_linear_net_is_g_to_the_layers_after_the_last_norm():
    g = 3.0
    for depth in (1, 4, 8):
        assert typical_log_gain(depth, "identity", gain=g) == pytest.approx(
            (depth + 1) * math.log(g)
        )
    for sites in ([0], [0, 1, 2], [2, 5], [7], list(range(8))):
        after = 8 - max(sites)  # hidden layers after the last norm, and the output layer
        for norm in ("batch", "layer", "rms"):
            got = typical_log_gain(8, "identity", gain=g, norm_sites=sites, norm=norm)
            assert got == pytest.approx(after * math.log(g)), (sites, norm)


def test_typical_gain_of_relu_without_norms_halves_the_second_moment_per_relu():
    got = typical_log_gain(5, "relu", gain=2.0)
    assert got == pytest.approx(6 * math.log(2.0) + 5 * 0.5 * math.log(0.5))


@pytest.mark.parametrize(
    "activation, sites, norm",
    [
        ("tanh", [], "batch"),
        ("tanh", [1], "batch"),
        ("relu", [0, 2], "batch"),
        ("tanh", [0], "layer"),
    ],
)
def test_typical_gain_matches_a_wide_random_net(activation, sites, norm):
    """E ||J V||^2 / ||V||^2 of the whole-batch map of a wide random net (square layers,
    batch statistics), for random directions V, against the mean-field prediction."""
    width, batch, depth, g = 768, 384, 3, 3.0
    gen = torch.Generator().manual_seed(0)
    weights = [
        g * torch.randn(width, width, generator=gen, dtype=torch.float64) / width**0.5
        for _ in range(depth + 1)
    ]
    act = {"tanh": torch.tanh, "relu": torch.relu}[activation]

    def net(x):
        for layer, w in enumerate(weights[:-1]):
            x = x @ w.T
            if layer in sites:
                x = (
                    F.batch_norm(x, None, None, training=True, eps=1e-12)
                    if norm == "batch"
                    else F.layer_norm(x, x.shape[1:], eps=1e-12)
                )
            x = act(x)
        return x @ weights[-1].T

    x = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    ratios = []
    for _ in range(4):
        v = torch.randn(batch, width, generator=gen, dtype=torch.float64)
        _, jv = torch.func.jvp(net, (x,), (v,))
        ratios.append((jv.pow(2).sum() / v.pow(2).sum()).item())
    measured = 0.5 * math.log(np.mean(ratios))
    predicted = typical_log_gain(depth, activation, gain=g, norm_sites=sites, norm=norm)
    assert measured == pytest.approx(predicted, abs=0.05)


def test_typical_gain_rejects_what_it_does_not_model():
    with pytest.raises(ConfigError, match="norm_sites"):
        typical_log_gain(3, "tanh", gain=1.0, norm_sites=[3])
    with pytest.raises(ConfigError, match="not modelled"):
        typical_log_gain(3, "tanh", gain=1.0, norm_sites=[0], norm="group")
    with pytest.raises(ConfigError, match="gain"):
        typical_log_gain(3, "tanh", gain=0.0)
