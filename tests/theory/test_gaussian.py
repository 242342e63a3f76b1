"""Gaussian expectations against closed forms and a seeded Monte Carlo (karakida2019)."""

import numpy as np
import pytest

from normscope.theory import activation, gaussian_expectation, gaussian_expectation_2d

relu, step = activation("relu")

# Measured quadrature error with the default 80 nodes per piece is <= 1e-13 for |ρ| <= 0.95
# (module docs of theory.gaussian); 1e-11 leaves room for rounding on other platforms.
TOL = 1e-11


def _arccos_angle(q1: float, q2: float) -> float:
    return float(np.arccos(np.clip(q2 / q1, -1.0, 1.0)))


@pytest.mark.parametrize("q", [0.3, 1.0, 2.0, 7.5])
def test_second_moments_match_closed_forms(q):
    assert gaussian_expectation(lambda u: u**2, q) == pytest.approx(q, abs=TOL)
    assert gaussian_expectation(lambda u: u**4, q) == pytest.approx(3 * q**2, rel=TOL)
    assert gaussian_expectation(lambda u: relu(u) ** 2, q) == pytest.approx(q / 2, abs=TOL)
    assert gaussian_expectation(lambda u: step(u) ** 2, q) == pytest.approx(0.5, abs=TOL)


@pytest.mark.parametrize("rho", [-0.9, -0.3, 0.0, 0.3, 0.7, 0.95, 1.0])
def test_relu_covariance_matches_arccos_kernel(rho):
    q1 = 1.7
    q2 = rho * q1
    theta = _arccos_angle(q1, q2)
    degree1 = q1 / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    degree0 = (np.pi - theta) / (2 * np.pi)
    assert gaussian_expectation_2d(relu, relu, q1, q2) == pytest.approx(degree1, abs=TOL)
    assert gaussian_expectation_2d(step, step, q1, q2) == pytest.approx(degree0, abs=TOL)


@pytest.mark.parametrize(("q1", "q2"), [(0.5, 0.1), (2.0, -1.2), (3.0, 2.9)])
def test_smooth_covariances_match_closed_forms(q1, q2):
    # E[sin u sin u′] = e^{−q1} sinh(q2); E[erf u erf u′] = (2/π) arcsin(2 q2 / (1 + 2 q1)).
    sin_kernel = np.exp(-q1) * np.sinh(q2)
    erf_kernel = 2 / np.pi * np.arcsin(2 * q2 / (1 + 2 * q1))
    assert gaussian_expectation_2d(np.sin, np.sin, q1, q2) == pytest.approx(sin_kernel, abs=TOL)
    erf = activation("erf")[0]
    assert gaussian_expectation_2d(erf, erf, q1, q2) == pytest.approx(erf_kernel, abs=TOL)


def test_tanh_expectations_match_seeded_monte_carlo():
    rng = np.random.default_rng(20240601)
    q1, q2 = 1.3, 0.8
    cov = np.array([[q1, q2], [q2, q1]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=1_000_000)
    for samples, exact in (
        (np.tanh(u[:, 0]) ** 2, gaussian_expectation(lambda x: np.tanh(x) ** 2, q1)),
        (np.tanh(u[:, 0]) * np.tanh(u[:, 1]), gaussian_expectation_2d(np.tanh, np.tanh, q1, q2)),
    ):
        stderr = samples.std() / np.sqrt(samples.size)
        assert abs(samples.mean() - exact) < 5 * stderr


def test_perfect_correlation_reduces_to_one_dimensional_expectation():
    q = 1.4
    both = gaussian_expectation_2d(np.tanh, np.tanh, q, q)
    assert both == pytest.approx(gaussian_expectation(lambda u: np.tanh(u) ** 2, q), abs=TOL)


def test_covariance_larger_than_variance_is_rejected():
    with pytest.raises(ValueError, match="q2"):
        gaussian_expectation_2d(np.tanh, np.tanh, 1.0, 1.5)
    with pytest.raises(ValueError, match="q"):
        gaussian_expectation(np.tanh, -1.0)
