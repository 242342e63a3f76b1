from __future__ import annotations

import pytest
import torch

from normscope.linalg import hutchinson, hutchpp

from tests.linalg.spectra import orthogonal, with_spectrum

F64 = torch.float64


def _decaying(dim=200, seed=1):
    return with_spectrum(1.0 / torch.arange(1, dim + 1, dtype=F64) ** 2, seed=seed)[0]


def test_hutchpp_beats_hutchinson_at_the_same_budget_on_a_decaying_spectrum():
    a = _decaying()
    exact = float(torch.trace(a))
    errors_pp, errors_h = [], []
    for seed in range(20):
        pp = hutchpp(
            lambda v: a @ v, 200, num_matvecs=30, matmat=lambda v: v @ a, seed=seed, dtype=F64
        )
        h = hutchinson(
            lambda v: a @ v, 200, num_probes=30, matmat=lambda v: v @ a, seed=seed, dtype=F64
        )
        assert pp.num_matvecs == h.num_matvecs == 30
        errors_pp.append(abs(pp.estimate - exact))
        errors_h.append(abs(h.estimate - exact))
    assert sum(errors_pp) * 5 < sum(errors_h)


def test_hutchpp_is_exact_when_the_sketch_holds_the_range():
    q = orthogonal(120, seed=2)
    a = (q[:, :5] * torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5], dtype=F64)) @ q[:, :5].T
    est = hutchpp(lambda v: a @ v, 120, num_matvecs=21, dtype=F64)
    assert est.sketch_size == 7 and est.num_probes == 7
    assert est.estimate == pytest.approx(10.5, rel=1e-10)
    assert est.standard_error < 1e-10


def test_hutchpp_budget_split_and_unbiased_mean():
    a = _decaying(dim=80, seed=3)
    runs = [
        hutchpp(lambda v: a @ v, 80, num_matvecs=10, matmat=lambda v: v @ a, seed=s, dtype=F64)
        for s in range(100)
    ]
    assert {(r.sketch_size, r.num_probes, r.num_matvecs) for r in runs} == {(3, 4, 10)}
    values = torch.tensor([r.estimate for r in runs], dtype=F64)
    assert abs(values.mean() - torch.trace(a)) <= 3 * values.std() / 100**0.5
    # The stochastic part's error is the only randomness left once the sketch is fixed;
    # its reported size must match the spread of the estimates to within a factor 2.
    errors = torch.tensor([r.standard_error for r in runs], dtype=F64)
    assert 0.5 < float(errors.mean() / values.std()) < 2.0


def test_hutchpp_float32_outputs_and_small_dimension():
    a = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    est = hutchpp(lambda v: a @ v, torch.zeros(3), num_matvecs=12)
    assert est.sketch_size == 3
    assert est.estimate == pytest.approx(6.0, rel=1e-5)


def test_hutchpp_rejects_a_budget_below_four():
    with pytest.raises(ValueError, match="got 3"):
        hutchpp(lambda v: v, 10, num_matvecs=3)
