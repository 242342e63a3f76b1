from __future__ import annotations

import pytest
import torch

from normscope.linalg import hutchinson, hutchpp, xtrace

from tests.linalg.spectra import orthogonal, random_spectrum, with_spectrum

F64 = torch.float64


def _decaying(dim=200, seed=1, power=2):
    return with_spectrum(1.0 / torch.arange(1, dim + 1, dtype=F64) ** power, seed=seed)[0]


def _runs(estimator, a, seeds, **kwargs):
    dim = a.shape[0]
    return [
        estimator(lambda v: a @ v, dim, matmat=lambda v: v @ a, seed=s, dtype=F64, **kwargs)
        for s in range(seeds)
    ]


@pytest.mark.parametrize(
    "spectrum",
    [
        lambda: 1.0 / torch.arange(1, 151, dtype=F64),
        lambda: random_spectrum(150, seed=2),  # indefinite, bulk-dominated
    ],
)
def test_xtrace_is_unbiased(spectrum):
    a, _ = with_spectrum(spectrum(), seed=3)
    values = torch.tensor([r.estimate for r in _runs(xtrace, a, 300, num_matvecs=20)])
    assert abs(float(values.mean()) - float(torch.trace(a))) <= 3 * float(values.std()) / 300**0.5


def test_xtrace_beats_hutchpp_and_hutchinson_on_a_decaying_spectrum():
    a = _decaying()
    exact = float(torch.trace(a))

    def rms(runs):
        return float(torch.tensor([(r.estimate - exact) ** 2 for r in runs]).mean().sqrt())

    x = rms(_runs(xtrace, a, 40, num_matvecs=30))
    pp = rms(_runs(hutchpp, a, 40, num_matvecs=30))
    h = rms(_runs(hutchinson, a, 40, num_probes=30))
    assert x < 0.8 * pp and pp * 5 < h


def test_xtrace_standard_error_matches_the_spread_of_estimates():
    a = _decaying(dim=120, seed=4, power=1)
    runs = _runs(xtrace, a, 100, num_matvecs=24)
    values = torch.tensor([r.estimate for r in runs])
    errors = torch.tensor([r.standard_error for r in runs])
    assert {(r.num_matvecs, r.num_probes) for r in runs} == {(24, 12)}
    assert 0.5 < float(errors.mean() / values.std()) < 2.0


def test_xtrace_is_exact_when_the_test_vectors_hold_the_range():
    q = orthogonal(100, seed=5)
    a = (q[:, :4] * torch.tensor([4.0, 3.0, -2.0, 1.0], dtype=F64)) @ q[:, :4].T
    est = xtrace(lambda v: a @ v, 100, num_matvecs=12, dtype=F64)
    assert est.estimate == pytest.approx(6.0, rel=1e-10)
    assert est.standard_error == 0.0 and est.num_matvecs == 12


def test_xtrace_matmat_and_matvec_paths_agree_and_float32_works():
    a = _decaying(dim=60, seed=6)
    by_vector = xtrace(lambda v: a @ v, 60, num_matvecs=10, seed=7, dtype=F64)
    by_block = xtrace(
        lambda v: a @ v, 60, num_matvecs=10, seed=7, dtype=F64, matmat=lambda v: v @ a
    )
    assert by_vector.estimate == pytest.approx(by_block.estimate, rel=1e-12)
    single = xtrace(lambda v: a.float() @ v, torch.zeros(60), num_matvecs=10, seed=7)
    assert single.estimate == pytest.approx(by_vector.estimate, rel=1e-4)


def test_xtrace_small_dimension_is_exact_and_odd_budget_uses_pairs():
    a = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=F64))
    est = xtrace(lambda v: a @ v, 3, num_matvecs=9, dtype=F64)
    assert est.num_probes == 3 and est.num_matvecs == 6
    assert est.estimate == pytest.approx(6.0, rel=1e-12)


def test_xtrace_rejects_a_budget_below_four():
    with pytest.raises(ValueError, match="got 3"):
        xtrace(lambda v: v, 10, num_matvecs=3)
