from __future__ import annotations

import pytest
import torch

from normscope.linalg import lanczos, power_iteration

from tests.linalg.spectra import random_spectrum, with_spectrum

F64 = torch.float64


def test_power_iteration_agrees_with_eigh():
    a, q = with_spectrum(random_spectrum(150, seed=1))
    result = power_iteration(lambda v: a @ v, 150, tol=1e-12, dtype=F64)
    top = torch.linalg.eigvalsh(a)[-1]
    assert result.converged
    assert abs(result.value - float(top)) <= 1e-9 * float(top)
    assert abs(float(result.vector @ q[:, 0])) > 1 - 1e-5
    assert result.num_matvecs == result.iterations
    assert result.residual == pytest.approx(
        float((a @ result.vector - result.value * result.vector).norm()), rel=1e-6
    )


def test_power_iteration_finds_a_dominant_negative_eigenvalue():
    lam = torch.cat([torch.tensor([-5.0]), torch.linspace(-2.0, 3.0, 49)]).to(F64)
    a, _ = with_spectrum(lam, seed=2)
    result = power_iteration(lambda v: a @ v, 50, tol=1e-12, dtype=F64)
    assert result.converged and result.value == pytest.approx(-5.0, rel=1e-9)


def test_power_iteration_needs_more_matvecs_than_lanczos_at_a_small_gap():
    lam = torch.cat([torch.tensor([10.0, 9.5]), torch.linspace(0.0, 9.0, 98)]).to(F64)
    a, _ = with_spectrum(lam, seed=3)
    power = power_iteration(lambda v: a @ v, 100, tol=1e-10, dtype=F64)
    krylov = lanczos(lambda v: a @ v, 100, tol=1e-6, dtype=F64)
    assert power.converged and krylov.converged
    assert power.value == pytest.approx(10.0, rel=1e-8)
    assert krylov.num_matvecs * 3 < power.num_matvecs


def test_power_iteration_warm_start_on_an_eigenvector_stops_at_once():
    a, q = with_spectrum(random_spectrum(60, seed=4))
    result = power_iteration(lambda v: a @ v, 60, v0=q[:, 0], dtype=F64)
    assert result.converged and result.num_matvecs <= 2
    assert result.value == pytest.approx(12.0, rel=1e-12)


def test_power_iteration_float32_follows_the_example_tensor():
    a, _ = with_spectrum(random_spectrum(80, seed=5).float())
    result = power_iteration(lambda v: a @ v, torch.zeros(80), tol=1e-6)
    assert result.vector.dtype == torch.float32
    assert result.value == pytest.approx(12.0, rel=1e-4)


def test_power_iteration_reports_not_converged_at_max_iter():
    lam = torch.cat([torch.tensor([1.0, 0.999]), torch.linspace(0.0, 0.5, 48)]).to(F64)
    a, _ = with_spectrum(lam, seed=6)
    result = power_iteration(lambda v: a @ v, 50, tol=1e-14, max_iter=7, dtype=F64)
    assert not result.converged and result.num_matvecs == 7


def test_power_iteration_rejects_a_zero_start_and_bad_tolerance():
    with pytest.raises(ValueError, match="v0"):
        power_iteration(lambda v: v, 4, v0=torch.zeros(4))
    with pytest.raises(ValueError, match="-1"):
        power_iteration(lambda v: v, 4, tol=-1)
