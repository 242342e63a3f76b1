"""Initialization: determinism from the seed alone, and the advertised distributions."""

from __future__ import annotations

import math

import pytest
import torch

from normscope import nets
from normscope.nets.init import draw_weight, haar_orthogonal

SPECS = {
    "mlp": {"input_shape": (5,), "width": 4, "depth": 2, "norm": "batch"},
    "cnn": {"input_shape": (2, 4, 4), "width": 4, "depth": 2, "norm": "weight"},
    "resnet": {"input_shape": (2, 8, 8), "width": 2, "depth": 1, "norm": "group", "groups": 2},
    "transformer": {"input_shape": (2, 5), "width": 4, "depth": 1, "norm": "dyt"},
}


def _build(arch: str, **extra) -> torch.nn.Module:
    return nets.build({"arch": arch, "output_dim": 3, **SPECS[arch], **extra})


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", SPECS)
def test_same_seed_same_weights_whatever_the_global_rng(arch):
    torch.manual_seed(1)
    first = _build(arch, seed=7)
    torch.manual_seed(2)
    second = _build(arch, seed=7)
    assert _same(first, second)


@pytest.mark.parametrize("arch", SPECS)
def test_different_seed_different_weights(arch):
    assert not _same(_build(arch, seed=0), _build(arch, seed=1))


@pytest.mark.parametrize("arch", SPECS)
@pytest.mark.parametrize("init", nets.INITS)
def test_building_leaves_global_rng_untouched(arch, init):
    state = torch.random.get_rng_state()
    _build(arch, init=init)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_float64_build_holds_the_float32_weights_up_to_rounding():
    low, high = _build("mlp", dtype="float32"), _build("mlp", dtype="float64")
    for key, value in high.state_dict().items():
        assert value.dtype in (torch.float64, torch.int64)
        assert torch.allclose(value.to(low.state_dict()[key].dtype), low.state_dict()[key])


@pytest.mark.parametrize("widths", [[8, 8], [3, 7], [9, 2]])
def test_orthogonal_init_gives_scaled_orthonormal_rows_or_columns(widths):
    sigma_w = 1.7
    model = nets.mlp(
        input_shape=(5,),
        output_dim=4,
        width=widths,
        depth=2,
        init="orthogonal",
        sigma_w=sigma_w,
        dtype="float64",
    )
    for name, layer in nets.linear_layers(model):
        w = layer.weight
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        eye = torch.eye(gram.shape[0], dtype=torch.float64)
        assert torch.allclose(gram, sigma_w**2 * eye, atol=1e-12), name


def test_haar_orthogonal_has_no_sign_bias():
    # A Haar matrix has E[Q_ii] = 0 and det = +-1 with equal odds; QR without the sign
    # correction fixes the signs of R's diagonal and biases both.
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([haar_orthogonal(3, 3, g) for _ in range(2000)])
    assert draws.diagonal(dim1=1, dim2=2).mean().abs() < 0.05
    assert torch.linalg.det(draws).mean().abs() < 0.1


def test_gaussian_init_has_variance_sigma_w_squared_over_fan_in():
    sigma_w, sigma_b = 1.3, 0.5
    model = nets.mlp(
        input_shape=(300,),
        output_dim=2,
        width=400,
        depth=1,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        dtype="float64",
    )
    weight, bias = model.fc1.weight, model.fc1.bias
    assert weight.var().item() == pytest.approx(sigma_w**2 / 300, rel=0.02)
    assert weight.mean().abs().item() < 3 * sigma_w / math.sqrt(300 * weight.numel())
    assert bias.var().item() == pytest.approx(sigma_b**2, rel=0.25)


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [("kaiming", 2 / (60 * 9)), ("xavier", 2 / (60 * 9 + 50 * 9))],
)
def test_kaiming_and_xavier_variances_on_conv_weights(scheme, variance):
    g = torch.Generator().manual_seed(0)
    weight = draw_weight(torch.Size([50, 60, 3, 3]), scheme, sigma_w=1.0, generator=g)
    assert weight.var().item() == pytest.approx(variance, rel=0.03)


def test_weight_scale_multiplies_every_weight_and_no_bias():
    base = _build("mlp", dtype="float64")
    scaled = _build("mlp", dtype="float64", weight_scale=3.0)
    for (name, a), (_, b) in zip(nets.linear_layers(base), nets.linear_layers(scaled), strict=True):
        assert torch.allclose(b.weight, 3.0 * a.weight), name
        assert torch.equal(b.bias, a.bias), name


def test_bias_false_removes_every_linear_bias():
    model = _build("transformer", bias=False)
    assert all(layer.bias is None for _, layer in nets.linear_layers(model))


def test_weight_norm_keeps_the_initialized_weight():
    plain = nets.mlp(input_shape=(5,), output_dim=2, width=4, depth=2, dtype="float64")
    normed = nets.mlp(
        input_shape=(5,), output_dim=2, width=4, depth=2, dtype="float64", norm="weight"
    )
    assert torch.allclose(normed.fc1.weight, plain.fc1.weight, atol=1e-14)
    assert torch.allclose(normed.fc2.weight, plain.fc2.weight, atol=1e-14)
