"""Mean-field Fisher spectrum of wide random fully connected nets (karakida2019).

Net and conventions (standard parametrization, not the NTK one):
h_0 = x ∈ R^{M_0};  u_l = W_l h_{l−1} + b_l,  h_l = φ(u_l)  for l = 1 … L−1;
f(x) = u_L = W_L h_{L−1} + b_L ∈ R^C (linear output layer L).
W_l has i.i.d. N(0, σ_w² / M_{l−1}) entries and b_l i.i.d. N(0, σ_b²) entries. Hidden
widths are M_l = α_l M (α_0 for the input). The Fisher for squared loss with unit noise is
F = (1/T) Σ_t Σ_k ∇_θ f_k(x_t) ∇_θ f_k(x_t)ᵀ over T samples; its non-zero eigenvalues are
those of the dual Gram matrix K = J Jᵀ / T (J the TC × P Jacobian).

Order parameters (index l counts weight layers, l = 0 is the input):

- forward, l = 1 … L: q_1^l = σ_w² q̂_1^{l−1} + σ_b² (pre-activation variance of one sample),
  q_2^l = σ_w² q̂_2^{l−1} + σ_b² (covariance of two different samples);
  q̂_1^l = E[φ(u)²], q̂_2^l = E[φ(u) φ(u′)], (u, u′) Gaussian with variances q_1^l and
  covariance q_2^l, for l = 1 … L−1; the input gives q̂_1^0 = ‖x‖² / M_0 and
  q̂_2^0 = x·x′ / M_0 (0 for independent Gaussian inputs); the output layer is linear so
  q̂^L = q^L.
- backward, l = L … 1: q̃^L = 1; q̃_1^l = σ_w² q̃_1^{l+1} E[φ′(u)²],
  q̃_2^l = σ_w² q̃_2^{l+1} E[φ′(u) φ′(u′)], with (u, u′) at layer l (variances q_1^l,
  covariance q_2^l). q̃_1^l is ‖∂f_k/∂u_l‖² for one sample, q̃_2^l the inner product of
  that backward signal for two samples.
- α = Σ_{l=1}^{L−1} α_l α_{l−1} (so P ≈ α M²: the O(M) parameters of the output layer and
  all biases are not counted), κ_1 = Σ_{l=1}^{L} (α_{l−1}/α) q̃_1^l q̂_1^{l−1}, κ_2 the same
  with q̃_2, q̂_2. The output layer l = L enters κ (through q̂^{L−1}), not α.

Then K_(t,k),(t′,k′) ≈ δ_kk′ (αM/T) [(κ_1 − κ_2) δ_tt′ + κ_2]: per output a bulk
(αM/T)(κ_1 − κ_2) of multiplicity T − 1 and an outlier, the all-ones direction, of size
λ_max = αM((T − 1)/T κ_2 + κ_1/T). Biases add (1/T) Σ_l q̃^l to K, a relative O(1/M)
term, ignored at leading order like the output-layer weights in P.

Example:
    >>> order = order_parameters(3, "relu", sigma_w2=2.0, sigma_b2=0.0, q1_input=1.0)
    >>> round(order.kappa1, 12)  # (1/2)(q̃¹q̂⁰ + q̃²q̂¹ + q̃³q̂²) = (1 + 1 + 1)/2
    1.5
    >>> round(fisher_predictions(order, width=512, n_samples=100, n_outputs=10).mean, 12)
    0.029296875
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from normscope.errors import ConfigError
from normscope.theory.activations import ActivationLike
from normscope.theory.activations import activation as resolve_activation
from normscope.theory.gaussian import (
    DEFAULT_NODES,
    gaussian_expectation,
    gaussian_expectation_2d,
)


@dataclass(frozen=True)
class OrderParameters:
    """Mean-field order parameters of karakida2019 (see the module docs for indices).

    Arrays have length L + 1 and are indexed by the layer l = 0 … L; entries that do not
    exist are NaN (q^0 and q̃^0: the input has no pre-activation and no weights).
    """

    depth: int
    alphas: np.ndarray
    q1: np.ndarray
    q2: np.ndarray
    qhat1: np.ndarray
    qhat2: np.ndarray
    qtilde1: np.ndarray
    qtilde2: np.ndarray
    alpha: float
    kappa1: float
    kappa2: float


@dataclass(frozen=True)
class FisherPrediction:
    """Leading-order Fisher eigenvalue statistics (karakida2019).

    mean = tr F / P, second_moment = Σ λ² / P with P ≈ α M², lambda_max the largest
    eigenvalue (multiplicity C), bulk the eigenvalue (αM/T)(κ_1 − κ_2) of the other
    non-zero directions.
    """

    mean: float
    second_moment: float
    lambda_max: float
    bulk: float


def _check_inputs(
    depth: int, sigma_w2: float, sigma_b2: float, q1_input: float, q2_input: float
) -> None:
    if int(depth) != depth or depth < 2:
        raise ConfigError(
            f"depth must be an integer >= 2 (at least one hidden layer), got {depth!r}"
        )
    if not sigma_w2 > 0 or not sigma_b2 >= 0:
        raise ConfigError(f"need sigma_w2 > 0 and sigma_b2 >= 0, got {sigma_w2!r}, {sigma_b2!r}")
    if not q1_input > 0 or abs(q2_input) > q1_input:
        raise ConfigError(
            f"need q1_input = ||x||^2/M0 > 0 and |q2_input| <= q1_input, "
            f"got {q1_input!r}, {q2_input!r}"
        )


def _width_ratios(alphas: Sequence[float] | None, depth: int) -> np.ndarray:
    if alphas is None:
        return np.ones(depth)
    ratios = np.asarray(alphas, dtype=float)
    if ratios.shape != (depth,) or not np.all(ratios > 0):
        raise ConfigError(
            f"alphas must hold {depth} positive width ratios M_l/M for l = 0 … L−1 "
            f"(input first), got {alphas!r}"
        )
    return ratios


def _forward(
    depth: int, phi, sigma_w2: float, sigma_b2: float, qhat0: tuple[float, float], n: int
) -> tuple[np.ndarray, ...]:
    q1, q2, qhat1, qhat2 = (np.full(depth + 1, np.nan) for _ in range(4))
    qhat1[0], qhat2[0] = qhat0
    for layer in range(1, depth + 1):
        q1[layer] = sigma_w2 * qhat1[layer - 1] + sigma_b2
        q2[layer] = sigma_w2 * qhat2[layer - 1] + sigma_b2
        if layer == depth:
            qhat1[layer], qhat2[layer] = q1[layer], q2[layer]
        else:
            qhat1[layer] = gaussian_expectation(lambda u: phi(u) ** 2, q1[layer], n_nodes=n)
            qhat2[layer] = gaussian_expectation_2d(phi, phi, q1[layer], q2[layer], n_nodes=n)
    return q1, q2, qhat1, qhat2


def _backward(
    depth: int, dphi, sigma_w2: float, q1: np.ndarray, q2: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    qtilde1, qtilde2 = np.full(depth + 1, np.nan), np.full(depth + 1, np.nan)
    qtilde1[depth] = qtilde2[depth] = 1.0
    for layer in range(depth - 1, 0, -1):
        gain1 = gaussian_expectation(lambda u: dphi(u) ** 2, q1[layer], n_nodes=n)
        gain2 = gaussian_expectation_2d(dphi, dphi, q1[layer], q2[layer], n_nodes=n)
        qtilde1[layer] = sigma_w2 * qtilde1[layer + 1] * gain1
        qtilde2[layer] = sigma_w2 * qtilde2[layer + 1] * gain2
    return qtilde1, qtilde2


def order_parameters(
    depth: int,
    activation: ActivationLike,
    sigma_w2: float,
    sigma_b2: float,
    q1_input: float,
    q2_input: float = 0.0,
    alphas: Sequence[float] | None = None,
    *,
    n_nodes: int = DEFAULT_NODES,
) -> OrderParameters:
    """Forward, backward and Fisher order parameters of karakida2019.

    Args:
        depth: number of weight layers L (L − 1 hidden layers and the linear output), >= 2.
        activation: a name from ``activation_names()`` or a pair (phi, dphi).
        sigma_w2: weight variance times fan-in, W_l ~ N(0, σ_w² / M_{l−1}).
        sigma_b2: bias variance σ_b².
        q1_input: q̂_1^0 = ‖x‖² / M_0.
        q2_input: q̂_2^0 = x·x′ / M_0 for two different inputs (0 for independent Gaussians).
        alphas: width ratios α_0 … α_{L−1} = M_l / M (input first); default all 1.
        n_nodes: quadrature nodes per smooth piece (see ``theory.gaussian``).

    Returns:
        :class:`OrderParameters` with q, q̂, q̃ per layer, α, κ_1 and κ_2 as in the module docs.
    """
    _check_inputs(depth, sigma_w2, sigma_b2, q1_input, q2_input)
    ratios = _width_ratios(alphas, depth)
    phi, dphi = resolve_activation(activation)
    q1, q2, qhat1, qhat2 = _forward(depth, phi, sigma_w2, sigma_b2, (q1_input, q2_input), n_nodes)
    qtilde1, qtilde2 = _backward(depth, dphi, sigma_w2, q1, q2, n_nodes)
    alpha = float(np.sum(ratios[1:] * ratios[:-1]))
    layers = np.arange(1, depth + 1)
    fan_in = ratios[layers - 1] / alpha
    kappa1 = float(np.sum(fan_in * qtilde1[layers] * qhat1[layers - 1]))
    kappa2 = float(np.sum(fan_in * qtilde2[layers] * qhat2[layers - 1]))
    return OrderParameters(
        depth=int(depth),
        alphas=ratios,
        q1=q1,
        q2=q2,
        qhat1=qhat1,
        qhat2=qhat2,
        qtilde1=qtilde1,
        qtilde2=qtilde2,
        alpha=alpha,
        kappa1=kappa1,
        kappa2=kappa2,
    )


def _check_sizes(width: int, n_samples: int, n_outputs: int) -> None:
    for name, value in (("width", width), ("n_samples", n_samples), ("n_outputs", n_outputs)):
        if int(value) != value or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def fisher_predictions(
    order: OrderParameters,
    width: int,
    n_samples: int,
    n_outputs: int,
    *,
    output_mean_subtracted: bool = False,
) -> FisherPrediction:
    """Predicted Fisher eigenvalue statistics for width M, T samples, C outputs (karakida2019).

    Plain net: m_λ = κ_1 C / M, s_λ = α C ((T − 1)/T κ_2² + κ_1²/T),
    λ_max = α M ((T − 1)/T κ_2 + κ_1/T) (multiplicity C), bulk (αM/T)(κ_1 − κ_2).

    ``output_mean_subtracted=True`` is batch norm in the last layer as far as its mean
    subtraction goes: every output is centred over the T samples, J → (P ⊗ I_C) J with
    P = I − 11ᵀ/T, so K → P K P per output. From K ≈ (αM/T)[(κ_1 − κ_2) I + κ_2 11ᵀ] and
    P 1 = 0 this leaves K ≈ (αM/T)(κ_1 − κ_2) P: the outlier is gone and
    λ_max = bulk = α (κ_1 − κ_2) M / T (multiplicity C (T − 1)), which stays O(1) when T grows
    like M. The trace drops to tr(P K P) = C (T − 1) (αM/T)(κ_1 − κ_2), so
    m_λ = (C/M)(κ_1 − κ_2)(T − 1)/T (κ_2 is removed from the mean, not only from λ_max) and
    s_λ = α C (κ_1 − κ_2)² (T − 1)/T². The division by the batch standard deviation only
    rescales these by a constant that is not modelled here.

    Finite T/M: (αM/T)(κ_1 − κ_2) is the level (mean) of the bulk. One net's bulk spreads
    around it by O(√(T/M)) (for the first layer K contains the Wishart matrix X Xᵀ), so the
    largest eigenvalue left after centring is a factor 1.4–2.0 above this level at
    T/M = 0.1–0.2 (measured on relu and tanh nets of width 256–512; the Marchenko–Pastur
    edge (1 + √(T/M))² gives 1.7–2.1). That factor depends on T/M only, so the claim that
    λ_max stays O(1) when T grows like M holds; compare the mean, or the ratio across
    widths at fixed T/M, against this prediction rather than the largest eigenvalue. The
    same holds for the plain net when κ_2 ≈ 0 (odd activation, σ_b = 0, independent
    inputs): there is no outlier, and the measured λ_max is the bulk edge (64 % above the
    formula for tanh at M = 512, T = 50).

    Here P ≈ α M² counts the hidden weights only (module docs); biases and the output
    layer's C M_{L−1} weights change these numbers by a relative O(1/M).
    """
    _check_sizes(width, n_samples, n_outputs)
    alpha, k1, k2 = order.alpha, order.kappa1, order.kappa2
    big_m, t, c = float(width), float(n_samples), float(n_outputs)
    bulk = alpha * big_m / t * (k1 - k2)
    if output_mean_subtracted:
        return FisherPrediction(
            mean=c / big_m * (k1 - k2) * (t - 1.0) / t,
            second_moment=alpha * c * (k1 - k2) ** 2 * (t - 1.0) / t**2,
            lambda_max=bulk,
            bulk=bulk,
        )
    return FisherPrediction(
        mean=k1 * c / big_m,
        second_moment=alpha * c * ((t - 1.0) / t * k2**2 + k1**2 / t),
        lambda_max=alpha * big_m * ((t - 1.0) / t * k2 + k1 / t),
        bulk=bulk,
    )


def lambda_max_output_batchnorm(order: OrderParameters, width: int, n_samples: int) -> float:
    """λ_max ≈ α (κ_1 − κ_2) M / T after batch norm in the last layer (karakida2019).

    The mean subtraction over the T samples projects the all-ones outlier out of K; see
    :func:`fisher_predictions` with ``output_mean_subtracted=True`` for the derivation and
    what it does to the mean and second moment.
    """
    return fisher_predictions(order, width, n_samples, 1, output_mean_subtracted=True).lambda_max
