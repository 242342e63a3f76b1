"""gradient_norms: per-layer gradient norms in forward order, and their log slope (meterez2024)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import normscope
from normscope import measures, nets
from normscope.measures.gradients import log_slope

from tests.helpers import bn_mlp, classification_data


def _autograd_weight_grads(model, x, y, bn_mode):
    s = normscope.Subject(model, (x, y), bn_mode=bn_mode)
    theta = s.theta.requires_grad_(True)
    (g,) = torch.autograd.grad(s.loss(theta), theta)
    return {n: float(g[s.layout.slice(n)].norm()) for n in s.layout.names if n.endswith("weight")}


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_gradient_norms_match_autograd_for_every_weighted_layer(bn_mode):
    x, y = classification_data(dtype=torch.float64)
    model = bn_mlp(torch.float64)
    m = measures.gradient_norms(normscope.Subject(model, (x, y), bn_mode=bn_mode))
    want = _autograd_weight_grads(model, x, y, bn_mode)
    assert m.details["layer_names"] == ["0", "1", "3", "4", "6"]
    for name, norm in zip(m.details["layer_names"], m.details["norms"], strict=True):
        assert norm == pytest.approx(want[f"{name}.weight"], rel=1e-12)
    assert m.value == pytest.approx(math.log(want["0.weight"]), rel=1e-12)


def test_layers_come_in_forward_order_not_registration_order():
    class Reversed(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(5, 3)
            self.early = nn.Linear(6, 5)

        def forward(self, x):
            return self.late(torch.tanh(self.early(x)))

    x, y = classification_data(dtype=torch.float64)
    m = measures.gradient_norms(normscope.Subject(Reversed().double(), (x, y)))
    assert m.details["layer_names"] == ["early", "late"]


def test_log_slope_recovers_an_exact_line_and_reports_r2():
    index = np.arange(1, 8)
    slope, intercept, r2 = log_slope(index, 0.3 * index - 2.0)
    assert (slope, intercept, r2) == pytest.approx((0.3, -2.0, 1.0))
    noisy = 0.3 * index + np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1, 0.1])
    assert log_slope(index, noisy)[2] < 1.0
    assert math.isnan(log_slope(np.array([1.0]), np.array([2.0]))[0])


def _meterez_log_grad(init, depth, width=64):
    # linear MLP, width = batch size, batch norm dividing by the batch RMS, train mode
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(width, width, generator=gen), torch.arange(width) % 10
    model = nets.mlp(
        input_shape=(width,),
        output_dim=10,
        width=width,
        depth=depth,
        norm="batch_rms",
        activation="identity",
        init=init,
        bias=False,
        seed=0,
    )
    return measures.gradient_norms(normscope.Subject(model, (x, y), bn_mode="train"))


def test_orthogonal_weights_keep_first_layer_gradient_bounded_gaussian_explode():
    # meterez2024 claim 2: log ||dL/dW_1|| bounded at any depth with orthogonal weights
    ortho = [_meterez_log_grad("orthogonal", depth).value for depth in (20, 500)]
    gauss = [_meterez_log_grad("gaussian", depth).value for depth in (20, 500)]
    assert all(abs(v) < 1.0 for v in ortho)
    assert abs(ortho[1] - ortho[0]) < 0.5
    assert gauss[1] - gauss[0] > 2.0
