from __future__ import annotations

import math

import numpy as np
import torch

from normscope.measures.landscape import filter_normalized_direction, landscape
from normscope.measures.sharpness import sharpness

from tests.curvature.models import subject


def test_random_slice_equals_direct_loss_evaluations_with_batch_statistics():
    s = subject("cnn_batchnorm", "train")
    m = landscape(s, span=0.5, num_points=7, seed=2)
    d = filter_normalized_direction(s, torch.Generator().manual_seed(2))
    theta = s.theta
    want = [float(s.loss(theta + a * d)) for a in np.linspace(-0.5, 0.5, 7)]
    np.testing.assert_allclose(m.details["losses"], want, rtol=1e-12)
    assert math.isclose(m.value, max(want) - float(s.loss()), rel_tol=1e-10)


def test_filter_normalized_direction_matches_filter_norms_and_skips_vectors():
    s = subject("cnn_batchnorm", "eval")
    d = s.layout.unflatten(filter_normalized_direction(s, torch.Generator().manual_seed(0)))
    for name, w in s.layout.unflatten(s.theta).items():
        if w.ndim >= 2:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1))
        else:
            assert not d[name].any()


def test_hessian_direction_slice_has_the_top_eigenvalue_as_curvature():
    s = subject("residual", "train")
    a = 1e-3
    m = landscape(s, directions="hessian", span=a, num_points=3)
    left, mid, right = m.details["losses"]
    curvature = (left + right - 2 * mid) / a**2
    top = sharpness(s, tol=1e-8).value
    assert math.isclose(m.details["eigenvalues"][0], top, rel_tol=1e-8)
    assert math.isclose(curvature, top, rel_tol=1e-4)


def test_two_dimensional_slice_has_a_square_grid_through_theta():
    s = subject("mlp_layernorm", "train")
    m = landscape(s, dims=2, num_points=5, span=0.3)
    assert m.details["losses"].shape == (5, 5)
    assert math.isclose(m.details["losses"][2, 2], m.details["loss"], rel_tol=1e-12)
    assert m.value >= 0
    assert m.cost["forward"] == 26
