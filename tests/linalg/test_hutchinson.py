from __future__ import annotations

import pytest
import torch

from normscope.linalg import hutchinson
from normscope.linalg._space import Space, gaussian, rademacher

from tests.linalg.spectra import random_spectrum, with_spectrum

F64 = torch.float64


def _estimates(a, distribution, seeds=200, num_probes=10):
    dim = a.shape[0]
    runs = [
        hutchinson(
            lambda v: a @ v,
            dim,
            num_probes=num_probes,
            distribution=distribution,
            matmat=lambda v: v @ a,
            seed=s,
            dtype=F64,
        )
        for s in range(seeds)
    ]
    values = torch.tensor([r.estimate for r in runs], dtype=F64)
    errors = torch.tensor([r.standard_error for r in runs], dtype=F64)
    return values, errors


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_its_standard_error_matches_the_spread(distribution):
    a, _ = with_spectrum(random_spectrum(60, seed=1))
    values, errors = _estimates(a, distribution)
    spread = values.std()
    assert abs(values.mean() - torch.trace(a)) <= 3 * spread / 200**0.5
    assert 1 / 1.5 <= float(errors.mean() / spread) <= 1.5


def test_hutchinson_rademacher_variance_matches_the_formula():
    a, _ = with_spectrum(random_spectrum(60, seed=2))
    values, _ = _estimates(a, "rademacher", num_probes=2)
    # Var(z^T A z) = 2 (||A||_F^2 - sum A_ii^2) for Rademacher z (hutchinson1989).
    per_sample = 2 * ((a**2).sum() - (torch.diagonal(a) ** 2).sum())
    ratio = float(values.var() / (per_sample / 2))
    assert 0.7 < ratio < 1.4


def test_hutchinson_matmat_and_matvec_paths_agree():
    a, _ = with_spectrum(random_spectrum(50, seed=3))
    by_vector = hutchinson(lambda v: a @ v, 50, num_probes=7, seed=4, dtype=F64)
    by_block = hutchinson(
        lambda v: a @ v, 50, num_probes=7, seed=4, dtype=F64, matmat=lambda v: v @ a
    )
    assert by_vector.estimate == pytest.approx(by_block.estimate, rel=1e-12)
    assert by_vector.num_matvecs == by_block.num_matvecs == by_block.num_probes == 7


def test_hutchinson_float32_is_close_to_the_trace():
    a, _ = with_spectrum(random_spectrum(100, seed=5).abs().float())
    est = hutchinson(lambda v: a @ v, torch.zeros(100), num_probes=64)
    assert abs(est.estimate - float(torch.trace(a))) < 4 * est.standard_error


def test_hutchinson_rejects_one_probe_and_unknown_distributions():
    with pytest.raises(ValueError, match="got 1"):
        hutchinson(lambda v: v, 5, num_probes=1)
    with pytest.raises(ValueError, match="cauchy"):
        hutchinson(lambda v: v, 5, distribution="cauchy")


@pytest.mark.parametrize("draw", [rademacher, gaussian])
def test_random_rows_do_not_depend_on_how_many_are_drawn_at_once(draw):
    space = Space(1001, F64, torch.device("cpu"))
    whole = draw(space, 5, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    parts = torch.cat([draw(space, 2, gen), draw(space, 3, gen)])
    assert torch.equal(whole, parts)


def test_rademacher_signs_are_fair_and_independent():
    space = Space(1001, F64, torch.device("cpu"))
    whole = rademacher(space, 5, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    assert set(whole.unique().tolist()) == {-1.0, 1.0}
    many = rademacher(space, 200, gen)
    # independent fair signs: the mean and the correlation of two rows are ~N(0, 1/n)
    assert abs(float(many.mean())) < 4 / (200 * 1001) ** 0.5
    assert abs(float((many[0] * many[1]).mean())) < 4 / 1001**0.5


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_streams_probes_in_blocks_with_the_same_draws(distribution):
    a, _ = with_spectrum(random_spectrum(40, seed=8))
    kwargs = {"num_probes": 37, "seed": 1, "dtype": F64, "distribution": distribution}
    by_vector = hutchinson(lambda v: a @ v, 40, **kwargs)
    blocks = []
    by_block = hutchinson(
        lambda v: a @ v, 40, matmat=lambda v: blocks.append(v.shape[0]) or v @ a, **kwargs
    )
    assert blocks == [16, 16, 5]
    assert by_vector.estimate == pytest.approx(by_block.estimate, rel=1e-12)
