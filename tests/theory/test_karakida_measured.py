"""karakida2019 predictions against the exact Fisher spectrum of random MLPs.

The nets are built here in plain torch (float64): f(x) = W_L h_{L−1} + b_L, h_l = φ(W_l h_{l−1}
+ b_l), W_l ~ N(0, σ_w²/M_{l−1}), b_l ~ N(0, σ_b²), all widths M, inputs Gaussian rescaled
to ‖x‖²/M_0 = 1. The dual Gram K = J Jᵀ / T is accumulated over the per-tensor blocks of the
whole Jacobian J (TC × P, rows ordered (sample, output)), J Jᵀ = Σ_blocks J_b J_bᵀ, and
P counts every parameter (biases and output layer included).

Tolerance: the predictions are leading order in 1/M at fixed T. One random net deviates
from its mean-field values by O(√(L/M)): over 40 seeded nets of depth 3 and width 512,
tr K for one output scatters by 4–5 % (standard deviation) around the prediction, with a
mean offset below 1 %. The bulk of K spreads around its mean by O(√(T/M)), which enters
Σλ² and λ_max at relative O(T/M) times the bulk's share (T/M ≤ 1/6 here). 15 % is about
three standard deviations of the first and covers the second; the measured errors are
1–8 %. Depth stays at 3 because the per-net scatter grows with L/M (7–8 % at depth 4).
"""

import functools

import numpy as np
import pytest
import torch

from normscope.theory import (
    fisher_predictions,
    lambda_max_output_batchnorm,
    order_parameters,
)

TOL = 0.15
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


def _random_mlp(depth, width, n_outputs, sigma_w2, sigma_b2, generator):
    widths = [width] * depth + [n_outputs]
    params = {}
    for layer in range(depth):
        fan_in, fan_out = widths[layer], widths[layer + 1]
        weight = torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64)
        params[f"w{layer}"] = weight * np.sqrt(sigma_w2 / fan_in)
        bias = torch.randn(fan_out, generator=generator, dtype=torch.float64)
        params[f"b{layer}"] = bias * np.sqrt(sigma_b2)
    return params


def _forward(params, x, depth, phi):
    h = x
    for layer in range(depth):
        u = h @ params[f"w{layer}"].T + params[f"b{layer}"]
        h = phi(u) if layer < depth - 1 else u
    return h.reshape(-1)


@functools.cache
def measured_gram(act, sigma_w2, sigma_b2, depth, width, n_samples, n_outputs, seed=0):
    """Return (K = J Jᵀ / T as numpy, P) for one seeded random net and input batch."""
    generator = torch.Generator().manual_seed(seed)
    params = _random_mlp(depth, width, n_outputs, sigma_w2, sigma_b2, generator)
    x = torch.randn(n_samples, width, generator=generator, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * np.sqrt(width)
    phi = ACTIVATIONS[act]
    rows = n_samples * n_outputs
    gram = torch.zeros(rows, rows, dtype=torch.float64)
    for name, value in params.items():

        def output_of_block(block, name=name):
            return _forward({**params, name: block}, x, depth, phi)

        jacobian = torch.func.jacrev(output_of_block)(value).reshape(rows, -1)
        gram += jacobian @ jacobian.T
    n_params = sum(v.numel() for v in params.values())
    return (gram / n_samples).numpy(), n_params


def _centre_outputs(gram, n_samples, n_outputs):
    """P K P with P = (I − 11ᵀ/T) ⊗ I_C: each output centred over the batch."""
    projector = np.kron(np.eye(n_samples) - 1.0 / n_samples, np.eye(n_outputs))
    return projector @ gram @ projector


CASES = [
    # (activation, σ_w², σ_b², depth L, width M, T, C, seed)
    ("relu", 2.0, 0.0, 3, 512, 50, 2, 0),
    ("tanh", 1.5, 0.1, 3, 512, 50, 2, 1),
    ("relu", 2.0, 0.1, 3, 384, 64, 3, 2),
]


def _relative_error(measured, predicted):
    return abs(measured / predicted - 1.0)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-M{c[4]}-T{c[5]}-C{c[6]}")
def test_fisher_statistics_match_mean_field_predictions(case):
    act, sw2, sb2, depth, width, t, c, _ = case
    gram, n_params = measured_gram(*case)
    eigenvalues = np.linalg.eigvalsh(gram)
    order = order_parameters(depth, act, sw2, sb2, q1_input=1.0, q2_input=0.0)
    predicted = fisher_predictions(order, width, t, c)
    assert _relative_error(np.trace(gram) / n_params, predicted.mean) < TOL
    assert _relative_error(np.sum(eigenvalues**2) / n_params, predicted.second_moment) < TOL
    assert _relative_error(eigenvalues[-1], predicted.lambda_max) < TOL


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-M{c[4]}-T{c[5]}-C{c[6]}")
def test_centring_outputs_removes_the_outlier_and_kappa2_from_the_mean(case):
    act, sw2, sb2, depth, width, t, c, _ = case
    gram, n_params = measured_gram(*case)
    centred = _centre_outputs(gram, t, c)
    order = order_parameters(depth, act, sw2, sb2, q1_input=1.0, q2_input=0.0)
    predicted = fisher_predictions(order, width, t, c, output_mean_subtracted=True)
    assert _relative_error(np.trace(centred) / n_params, predicted.mean) < TOL
    plain_top = np.linalg.eigvalsh(gram)[-1]
    centred_top = np.linalg.eigvalsh(centred)[-1]
    # The bulk's top edge, not its mean, is the largest eigenvalue left: it stays within
    # a few bulk levels while the plain λ_max is T κ_2/(κ_1 − κ_2) bulk levels up.
    assert predicted.lambda_max <= centred_top < 3 * predicted.lambda_max < plain_top


@pytest.mark.parametrize(("act", "sw2", "sb2"), [("relu", 2.0, 0.1), ("tanh", 1.5, 0.1)])
def test_lambda_max_grows_with_width_unless_outputs_are_centred(act, sw2, sb2):
    # Doubling M and T together: λ_max of the plain net grows like M; after centring the
    # outputs it stays put (its leading order α(κ_1 − κ_2)M/T and the bulk's finite-T/M
    # spread both depend on M and T only through T/M).
    order = order_parameters(3, act, sw2, sb2, q1_input=1.0)
    tops, centred_tops, predicted = [], [], []
    for width, t in ((256, 50), (512, 100)):
        gram, _ = measured_gram(act, sw2, sb2, 3, width, t, 1)
        tops.append(np.linalg.eigvalsh(gram)[-1])
        centred_tops.append(np.linalg.eigvalsh(_centre_outputs(gram, t, 1))[-1])
        predicted.append(fisher_predictions(order, width, t, 1).lambda_max)
    assert lambda_max_output_batchnorm(order, 512, 100) == lambda_max_output_batchnorm(
        order, 256, 50
    )
    assert _relative_error(tops[1] / tops[0], predicted[1] / predicted[0]) < TOL
    assert 0.8 < centred_tops[1] / centred_tops[0] < 1.25
