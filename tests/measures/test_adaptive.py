from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from normscope import Subject
from normscope.measures.adaptive import adaptive_sharpness
from normscope.measures.sharpness import sharpness

from tests.curvature.models import data, subject


def test_worst_case_beats_random_feasible_perturbations():
    s = subject("mlp_batchnorm", "train")
    rho = 0.1
    m = adaptive_sharpness(s, rho=rho, steps=10)
    theta, base = s.theta, float(s.loss())
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        u = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
        u = rho * u / u.norm()
        assert float(s.loss(theta + theta.abs() * u)) - base <= m.value
    assert m.value >= m.details["increases"][0]


def test_worst_case_for_small_radius_is_first_order():
    m = adaptive_sharpness(subject("residual", "train"), rho=1e-5, steps=2)
    assert math.isclose(m.value, m.details["first_order"], rel_tol=1e-3)


def test_average_case_equals_direct_evaluation_of_the_defined_draws():
    s = subject("cnn_batchnorm", "train")
    rho, n = 0.2, 6
    m = adaptive_sharpness(s, rho=rho, kind="average", num_probes=n, seed=4)
    theta = s.theta
    z = torch.randn(
        (n, theta.numel()), generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    direct = [float(s.loss(theta + rho * theta.abs() * zi / math.sqrt(theta.numel()))) for zi in z]
    want = sum(direct) / n - float(s.loss())
    assert math.isclose(m.value, want, rel_tol=1e-10, abs_tol=1e-14)
    assert m.details["standard_error"] > 0


@pytest.mark.parametrize("kind", ["worst", "average"])
def test_adaptive_sharpness_is_invariant_to_rescaling_a_scale_invariant_layer(kind):
    def rescaled(c):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(4, 5), nn.LayerNorm(5, eps=1e-30), nn.Tanh(), nn.Linear(5, 3)
        ).double()
        with torch.no_grad():
            model[0].weight.mul_(c)
            model[0].bias.mul_(c)
        return Subject(model, data())

    a = adaptive_sharpness(rescaled(1.0), kind=kind, num_probes=8)
    b = adaptive_sharpness(rescaled(4.0), kind=kind, num_probes=8)
    assert math.isclose(a.value, b.value, rel_tol=1e-6)
    raw_a, raw_b = sharpness(rescaled(1.0)).value, sharpness(rescaled(4.0)).value
    assert not math.isclose(raw_a, raw_b, rel_tol=1e-2)
