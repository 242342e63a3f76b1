"""Wide random nets: the measured Fisher against karakida2019's mean-field predictions.

Net: x (M inputs) -> Linear(M, M) -> ReLU -> Linear(M, C), no biases, weights
N(0, 2 / fan_in), T = 100 Gaussian inputs x ~ N(0, I_M), C = 10, squared-loss Fisher
(kind "ntk"). Then alpha = 1, P_theory = M^2 (the C M output weights are O(1/M) of P, so
theory's m = tr F / P_theory is compared with tr F / M^2).

Tolerances (finite width; six seeds at M = 64, 128, 256 in benchmarks/bench_fisher.py,
results in benchmarks/results/fisher.md): tr F / (alpha M^2 m_theory) scatters around 1
with a standard deviation of 3.3 %, 2.0 %, 1.1 %, the order of the relative fluctuation
sqrt(2 / (M C)) of the output weights' squared norms that enter kappa_1; we allow
2 sqrt(2 / (M C)) (over 3 standard deviations) plus 4 standard errors of the Lanczos
path's Hutchinson estimate. lambda_max is the largest of C near-degenerate outliers whose
spread is O(1/sqrt(M)), so it lies above the leading-order prediction: by 12 ± 5 % at
M = 64, 5 ± 2 % at 128, 2 ± 2 % at 256; we allow 2.5 / sqrt(M) (31 % at M = 64, 11 % at
M = 512).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from normscope import Subject
from normscope.measures.fisher import fisher_spectrum
from normscope.theory.karakida import fisher_predictions, order_parameters

T, C = 100, 10
WIDTHS = (64, 128, 256, 512)


def _net(width: int, output_bn: bool, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    first, last = nn.Linear(width, width, bias=False), nn.Linear(width, C, bias=False)
    with torch.no_grad():
        for layer in (first, last):
            layer.weight.normal_(0.0, math.sqrt(2.0 / width), generator=gen)
    layers = [first, nn.ReLU(), last]
    if output_bn:
        layers.append(nn.BatchNorm1d(C, affine=False))
    return nn.Sequential(*layers).double()


def _measure(width: int, output_bn: bool):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, width, generator=gen, dtype=torch.float64)
    y = torch.randn(T, C, generator=gen, dtype=torch.float64)
    s = Subject(_net(width, output_bn), (x, y), loss="mse", bn_mode="train")
    # T C = 1000 > max_gram_size: the top C eigenvalues by block Lanczos (seconds, not minutes)
    m = fisher_spectrum(s, kind="ntk", k=C, max_gram_size=500, num_probes=20)
    order = order_parameters(2, "relu", sigma_w2=2.0, sigma_b2=0.0, q1_input=float(x.pow(2).mean()))
    return m, order, x


@pytest.fixture(scope="module")
def plain():
    return {w: _measure(w, output_bn=False) for w in WIDTHS}


@pytest.fixture(scope="module")
def output_bn():
    return {w: _measure(w, output_bn=True) for w in WIDTHS}


def _slope(results) -> float:
    lam = [results[w][0].value for w in WIDTHS]
    return float(np.polyfit(np.log(WIDTHS), np.log(lam), 1)[0])


@pytest.mark.parametrize("width", WIDTHS)
def test_wide_net_fisher_mean_and_lambda_max_match_karakida(plain, width):
    m, order, _ = plain[width]
    pred = fisher_predictions(order, width, T, C)
    assert m.settings["path"] == "lanczos" and m.details["lanczos_converged"]
    mean_theory_p = m.details["trace"] / (order.alpha * width**2)
    tol = (
        2 * math.sqrt(2 / (width * C))
        + 4
        * m.details["mean_stderr"]
        * m.details["num_params"]
        / (order.alpha * width**2)
        / pred.mean
    )
    assert mean_theory_p / pred.mean == pytest.approx(1.0, abs=tol)
    assert m.value / pred.lambda_max == pytest.approx(1.0, abs=2.5 / math.sqrt(width))


def test_top_eigenvectors_lie_in_the_mean_gradient_span(plain):
    """karakida2019: the C outliers are the directions of the per-class mean gradients."""
    m, _, _ = plain[WIDTHS[-1]]
    assert m.details["mean_gradient_overlap"].min() > 0.9


def test_lambda_max_grows_linearly_in_width_without_normalization(plain):
    assert _slope(plain) == pytest.approx(1.0, abs=0.1)


def test_output_batch_norm_lowers_the_width_slope_of_lambda_max(plain, output_bn):
    assert _slope(output_bn) < 0.75 < _slope(plain) - 0.2
    for width in WIDTHS:
        assert output_bn[width][0].value < plain[width][0].value / 3


def test_output_batch_norm_mean_matches_mean_subtracted_theory(output_bn):
    """tr F after output batch norm: karakida's mean-subtracted m, divided by the batch
    variance of the pre-normalization outputs (the rescaling theory leaves out)."""
    for width in WIDTHS:
        m, order, x = output_bn[width]
        with torch.no_grad():
            pre = _net(width, output_bn=False)(x)
        variance = float(pre.var(dim=0, unbiased=False).mean())
        pred = fisher_predictions(order, width, T, C, output_mean_subtracted=True)
        measured = m.details["trace"] / (order.alpha * width**2) * variance
        assert measured / pred.mean == pytest.approx(1.0, abs=2 * math.sqrt(2 / (width * C)))
