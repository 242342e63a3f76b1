"""InputJacobian against dense autograd Jacobians of the whole-batch input map."""

from __future__ import annotations

import pytest
import torch

import normscope
from normscope.curvature.input_jacobian import InputJacobian
from normscope.data import Dataset
from normscope.errors import ModelError

from tests.helpers import bn_mlp, classification_data


def _subject(bn_mode):
    x, y = classification_data(n=10, dtype=torch.float64)
    data = Dataset(x, y, task="classification", num_classes=3)
    return normscope.Subject(bn_mlp(torch.float64), data, bn_mode=bn_mode)


def _dense(s):
    x = s.data.x
    with s.modes():
        jac = torch.autograd.functional.jacobian(lambda z: s.output(s.theta, z), x)
    return jac.reshape(x.shape[0] * 3, -1)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_jvp_and_vjp_match_dense_whole_batch_jacobian(bn_mode):
    s = _subject(bn_mode)
    ij = InputJacobian(s, s.data.x)
    dense = _dense(s)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(s.data.x.shape, generator=gen, dtype=torch.float64)
    u = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ij.jvp(v).reshape(-1), dense @ v.reshape(-1))
    torch.testing.assert_close(ij.vjp(u).reshape(-1), dense.T @ u.reshape(-1))


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_spectral_norm_matches_dense_svd(bn_mode):
    s = _subject(bn_mode)
    norm, vector = InputJacobian(s, s.data.x).spectral_norm(tol=1e-10)
    dense = _dense(s)
    exact = torch.linalg.matrix_norm(dense, ord=2)
    assert norm == pytest.approx(float(exact), rel=1e-8)
    assert float((dense @ vector.reshape(-1)).norm()) == pytest.approx(float(exact), rel=1e-6)


def test_whole_batch_jacobian_couples_samples_in_train_mode_only():
    for bn_mode, coupled in (("train", True), ("eval", False)):
        dense = _dense(_subject(bn_mode)).reshape(10, 3, 10, 6)
        off_diagonal = dense[0, :, 1, :].abs().max()
        assert (off_diagonal > 1e-6) == coupled


def test_per_sample_jacobians_match_autograd_per_sample_in_eval_mode():
    s = _subject("eval")
    rows = InputJacobian(s, s.data.x).per_sample()
    with s.modes():
        for i in (0, 7):
            want = torch.autograd.functional.jacobian(
                lambda z: s.output(s.theta, z.unsqueeze(0))[0], s.data.x[i]
            )
            torch.testing.assert_close(rows[i], want)


def test_per_sample_refuses_coupled_samples():
    s = _subject("train")
    with pytest.raises(ModelError, match="couples"):
        InputJacobian(s, s.data.x).per_sample()
