"""Isometry gap and its decay bound (meterez2024)."""

import numpy as np
import pytest

from normscope.theory import isometry_gap, isometry_gap_bound


def _orthogonal(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


@pytest.mark.parametrize("seed", range(5))
def test_gap_is_nonnegative_and_equals_log_trace_minus_log_det(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 12)) * rng.uniform(0.1, 3.0, size=(8, 1))
    gram = x @ x.T
    _, logdet = np.linalg.slogdet(gram)
    expected = np.log(np.trace(gram) / 8) - logdet / 8
    assert isometry_gap(gram) == pytest.approx(expected, rel=1e-10)
    assert isometry_gap(gram) > 0


def test_gap_vanishes_for_orthogonal_rows_of_equal_norm():
    x = 2.5 * _orthogonal(6, seed=0)
    assert isometry_gap(x @ x.T) == pytest.approx(0.0, abs=1e-12)


def test_gap_grows_without_bound_as_rank_collapses():
    basis = _orthogonal(5, seed=1)
    gaps = []
    for smallest in (1.0, 0.3, 1e-2, 1e-4, 1e-6):
        x = np.diag([1.0, 1.0, 1.0, 1.0, smallest]) @ basis
        gaps.append(isometry_gap(x @ x.T))
    assert gaps[0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(gaps) > 0)
    x = np.diag([1.0, 1.0, 1.0, 1.0, 0.0]) @ basis
    assert isometry_gap(x @ x.T) == np.inf


def test_mean_subtracted_gap_projects_out_the_ones_direction():
    n = 6
    centring = np.eye(n) - np.ones((n, n)) / n
    # The most isometric centred Gram matrix, c (I − 11ᵀ/n), has gap 0 on 1^⊥.
    assert isometry_gap(3.0 * centring, mean_subtracted=True) == pytest.approx(0.0, abs=1e-12)
    x = centring @ np.random.default_rng(2).standard_normal((n, 9))
    gram = x @ x.T
    assert isometry_gap(gram) == np.inf
    nonzero = np.linalg.eigvalsh(gram)[1:]
    expected = np.log(nonzero.mean()) - np.log(nonzero).mean()
    assert isometry_gap(gram, mean_subtracted=True) == pytest.approx(expected, rel=1e-10)


def test_non_symmetric_or_non_square_gram_is_rejected():
    with pytest.raises(ValueError, match="symmetric"):
        isometry_gap(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        isometry_gap(np.ones((2, 3)))


def test_decay_bound_falls_by_e_every_decay_length():
    d, phi0, c = 8, 0.5, 0.1
    decay_length = c * d**2 * (1 + d * phi0)
    depths = np.array([0.0, decay_length, 2 * decay_length])
    bound = isometry_gap_bound(depths, d, phi0, c)
    np.testing.assert_allclose(bound, phi0 * np.exp(-np.arange(3)), rtol=1e-12)
    assert isometry_gap_bound(0, d, phi0, c) == phi0
    with pytest.raises(ValueError, match="c must"):
        isometry_gap_bound(1, d, phi0, 0.0)
