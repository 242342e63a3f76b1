"""karakida2019 order parameters against hand-derived closed forms, predictions against the
eigenvalues of the model Gram matrix they are derived from."""

import numpy as np
import pytest

from normscope.theory import (
    fisher_predictions,
    lambda_max_output_batchnorm,
    order_parameters,
)


def test_identity_order_parameters_match_geometric_series():
    depth, sw2, sb2, q0, c0 = 4, 1.5, 0.2, 0.8, 0.3
    alphas = [0.5, 1.0, 2.0, 1.5]
    order = order_parameters(depth, "identity", sw2, sb2, q0, c0, alphas)
    layers = np.arange(1, depth + 1)
    # Linear layers: q^l = σ_w^{2l} q^0 + σ_b² (σ_w^{2l} − 1)/(σ_w² − 1); q̃^l = σ_w^{2(L−l)}.
    expected_q1 = sw2**layers * q0 + sb2 * (sw2**layers - 1) / (sw2 - 1)
    expected_q2 = sw2**layers * c0 + sb2 * (sw2**layers - 1) / (sw2 - 1)
    np.testing.assert_allclose(order.q1[1:], expected_q1, rtol=1e-12)
    np.testing.assert_allclose(order.q2[1:], expected_q2, rtol=1e-12)
    np.testing.assert_allclose(order.qhat1[1:], expected_q1, rtol=1e-12)
    np.testing.assert_allclose(order.qtilde1[1:], sw2 ** (depth - layers), rtol=1e-12)
    np.testing.assert_allclose(order.qtilde2[1:], sw2 ** (depth - layers), rtol=1e-12)
    assert order.alpha == pytest.approx(0.5 * 1.0 + 1.0 * 2.0 + 2.0 * 1.5)


def test_identity_kappas_without_bias_are_a_single_power():
    # σ_b = 0: q̃^l q̂^{l−1} = σ_w^{2(L−l)} σ_w^{2(l−1)} q^0 for every l, so
    # κ_1 = σ_w^{2(L−1)} q^0 Σ_l α_{l−1} / α and κ_2 the same with the input overlap.
    depth, sw2, q0, c0 = 5, 1.3, 1.2, -0.4
    alphas = np.array([1.0, 0.5, 2.0, 1.0, 3.0])
    order = order_parameters(depth, "identity", sw2, 0.0, q0, c0, alphas)
    alpha = np.sum(alphas[1:] * alphas[:-1])
    assert order.kappa1 == pytest.approx(sw2 ** (depth - 1) * q0 * alphas.sum() / alpha)
    assert order.kappa2 == pytest.approx(sw2 ** (depth - 1) * c0 * alphas.sum() / alpha)


def test_relu_at_critical_init_keeps_signals_and_gradients_constant():
    # σ_w² = 2, σ_b = 0: E[relu(u)²] = q/2 and E[step(u)²] = 1/2, so q̂_1^l = q^0 and q̃_1^l = 1.
    order = order_parameters(6, "relu", 2.0, 0.0, 1.0, 0.0)
    np.testing.assert_allclose(order.qhat1[:-1], 1.0, rtol=1e-12)
    np.testing.assert_allclose(order.qtilde1[1:], 1.0, rtol=1e-12)
    assert order.kappa1 == pytest.approx(6 / 5)
    assert 0 < order.kappa2 < order.kappa1


def _model_gram(order, width, n_samples, n_outputs):
    """K ≈ (αM/T)[(κ_1 − κ_2) I + κ_2 11ᵀ] ⊗ I_C, the matrix the predictions come from."""
    t = n_samples
    block = (order.kappa1 - order.kappa2) * np.eye(t) + order.kappa2 * np.ones((t, t))
    return np.kron(order.alpha * width / t * block, np.eye(n_outputs))


@pytest.mark.parametrize("centred", [False, True])
def test_predictions_are_the_statistics_of_the_model_gram(centred):
    order = order_parameters(3, "tanh", 1.5, 0.1, 1.0)
    width, t, c = 300, 40, 3
    gram = _model_gram(order, width, t, c)
    if centred:
        projector = np.kron(np.eye(t) - np.ones((t, t)) / t, np.eye(c))
        gram = projector @ gram @ projector
    eigenvalues = np.linalg.eigvalsh(gram)
    n_params = order.alpha * width**2
    predicted = fisher_predictions(order, width, t, c, output_mean_subtracted=centred)
    assert predicted.mean == pytest.approx(np.trace(gram) / n_params, rel=1e-10)
    assert predicted.second_moment == pytest.approx(np.sum(eigenvalues**2) / n_params, rel=1e-10)
    assert predicted.lambda_max == pytest.approx(eigenvalues[-1], rel=1e-10)
    if centred:
        assert lambda_max_output_batchnorm(order, width, t) == pytest.approx(eigenvalues[-1])


def test_invalid_arguments_are_rejected_with_the_bad_value():
    with pytest.raises(ValueError, match="depth"):
        order_parameters(1, "relu", 2.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="alphas"):
        order_parameters(3, "relu", 2.0, 0.0, 1.0, alphas=[1.0, 1.0])
    with pytest.raises(ValueError, match="q1_input"):
        order_parameters(3, "relu", 2.0, 0.0, 1.0, 2.0)
    order = order_parameters(3, "relu", 2.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="n_samples"):
        fisher_predictions(order, 100, 0, 1)
