from __future__ import annotations

import math

import pytest
import torch

from normscope.linalg import density_on_grid, hutchinson, slq, slq_trace

from tests.linalg.spectra import orthogonal, random_spectrum, with_spectrum

F64 = torch.float64


def _run(a, **kwargs):
    kwargs = {"num_probes": 8, "num_steps": 40, "dtype": F64, "matmat": lambda v: v @ a} | kwargs
    return slq(lambda v: a @ v, a.shape[0], **kwargs)


def _smoothed(eigenvalues, grid, sigma):
    kernel = torch.exp(-0.5 * ((grid[:, None] - eigenvalues[None, :]) / sigma) ** 2)
    return kernel.mean(dim=1) / (sigma * math.sqrt(2 * math.pi))


def test_slq_nodes_and_weights_shapes_and_normalization():
    a, _ = with_spectrum(random_spectrum(300, seed=1))
    result = _run(a)
    assert result.nodes.shape == result.weights.shape == (8, 40)
    assert torch.allclose(result.weights.sum(dim=1), torch.ones(8, dtype=F64), atol=1e-12)
    assert torch.all(result.weights >= 0)
    assert result.num_matvecs == 8 * 40 and torch.equal(result.steps, torch.full((8,), 40))


def test_slq_density_integrates_to_one_and_stays_in_the_spectrum():
    a, _ = with_spectrum(random_spectrum(300, seed=2))
    low, high = torch.linalg.eigvalsh(a)[[0, -1]].tolist()
    result = _run(a)
    density = density_on_grid(result)
    assert float(torch.trapezoid(density.density, density.grid)) == pytest.approx(1.0, abs=1e-4)
    # Ritz values lie in [lambda_min, lambda_max]; the kernel spreads them by sigma only.
    assert low - 1e-9 <= float(result.nodes.min()) and float(result.nodes.max()) <= high + 1e-9
    inside = (density.grid >= low - 4 * density.sigma) & (density.grid <= high + 4 * density.sigma)
    mass_inside = torch.trapezoid(density.density * inside, density.grid)
    assert float(mass_inside) > 1 - 1e-3


def test_slq_density_is_close_to_the_smoothed_true_density():
    a, _ = with_spectrum(random_spectrum(300, seed=3))
    result = _run(a, num_probes=10, num_steps=60)
    grid = torch.linspace(-8.0, 14.0, 800, dtype=F64)
    sigma = 0.5
    estimated = density_on_grid(result, grid, sigma=sigma).density
    truth = _smoothed(torch.linalg.eigvalsh(a), grid, sigma)
    l1 = float(torch.trapezoid((estimated - truth).abs(), grid))
    assert l1 < 0.1


def test_slq_moments_match_exact_traces_within_standard_errors():
    a, _ = with_spectrum(random_spectrum(300, seed=4))
    result = _run(a, num_probes=16)
    for f, exact in [(lambda t: t, torch.trace(a)), (lambda t: t**2, (a**2).sum())]:
        est = slq_trace(result, f)
        assert est.standard_error > 0
        assert abs(est.estimate - float(exact)) <= 4 * est.standard_error
        assert abs(est.estimate / 300 - float(exact) / 300) < 0.1 * float((a**2).sum()) / 300


def test_slq_trace_of_a_equals_hutchinson_with_the_same_probes():
    # Gauss quadrature is exact for degree 1, and both draw the same Rademacher probes.
    a, _ = with_spectrum(random_spectrum(100, seed=5))
    by_slq = slq_trace(_run(a, seed=7), lambda t: t)
    by_hutchinson = hutchinson(lambda v: a @ v, 100, num_probes=8, seed=7, dtype=F64)
    assert by_slq.estimate == pytest.approx(by_hutchinson.estimate, rel=1e-10)
    assert by_slq.standard_error == pytest.approx(by_hutchinson.standard_error, rel=1e-8)


def test_slq_log_determinant_of_a_positive_definite_matrix():
    lam = torch.linspace(0.5, 4.0, 200, dtype=F64)
    a, _ = with_spectrum(lam, seed=6)
    est = slq_trace(_run(a, num_probes=12, num_steps=25), torch.log)
    assert abs(est.estimate - float(torch.log(lam).sum())) <= 4 * est.standard_error


def test_slq_matmat_and_matvec_paths_agree():
    a, _ = with_spectrum(random_spectrum(80, seed=7))
    by_block = _run(a, num_probes=3, num_steps=15, seed=2)
    by_vector = _run(a, num_probes=3, num_steps=15, seed=2, matmat=None)
    assert torch.allclose(by_block.nodes, by_vector.nodes, atol=1e-10)
    assert torch.allclose(by_block.weights, by_vector.weights, atol=1e-10)
    assert by_block.num_matvecs == by_vector.num_matvecs == 45


def test_slq_stops_each_probe_at_an_invariant_subspace():
    q = orthogonal(100, seed=8)
    a = (q[:, :2] * torch.tensor([3.0, -2.0], dtype=F64)) @ q[:, :2].T
    result = _run(a, num_probes=4, num_steps=10)
    assert torch.equal(result.steps, torch.full((4,), 3))
    assert result.num_matvecs == 12
    targets = torch.tensor([-2.0, 0.0, 3.0], dtype=F64)
    distance = (result.nodes[:, :3, None] - targets).abs()
    assert torch.all(distance.min(dim=2).values < 1e-10)  # every node is an eigenvalue
    assert torch.all(distance.min(dim=1).values < 1e-10)  # every probe sees all three
    assert torch.all(result.weights[:, 3:] == 0)
    assert torch.allclose(result.weights.sum(dim=1), torch.ones(4, dtype=F64), atol=1e-12)


def test_slq_in_tiny_dimension_caps_the_steps():
    a = torch.diag(torch.tensor([1.0, 2.0], dtype=F64))
    result = _run(a, num_probes=2, num_steps=10)
    assert result.nodes.shape == (2, 2)
    assert torch.allclose(result.nodes, torch.tensor([[1.0, 2.0]] * 2, dtype=F64))


def test_slq_float32_outputs_follow_the_example_tensor():
    a, _ = with_spectrum(random_spectrum(150, seed=9).float())
    result = slq(lambda v: a @ v, torch.zeros(150), num_probes=4, num_steps=30)
    assert result.nodes.dtype == result.weights.dtype == torch.float32
    density = density_on_grid(result)
    assert density.density.dtype == density.grid.dtype == torch.float32
    assert float(torch.trapezoid(density.density, density.grid)) == pytest.approx(1.0, abs=1e-3)
    assert float(result.nodes.max()) == pytest.approx(12.0, rel=1e-4)


def test_density_of_the_zero_operator_is_a_single_peak_at_zero():
    result = slq(lambda v: torch.zeros_like(v), 20, num_probes=2, dtype=F64)
    density = density_on_grid(result)
    assert density.sigma == pytest.approx(0.01)
    assert float(density.grid[density.density.argmax()]) == pytest.approx(0.0, abs=1e-3)


def test_density_rejects_a_non_positive_sigma():
    result = slq(lambda v: v, 5, num_probes=2, dtype=F64)
    with pytest.raises(ValueError, match="sigma"):
        density_on_grid(result, sigma=0.0)
