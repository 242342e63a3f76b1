from __future__ import annotations

import pytest
import torch

from normscope import Subject
from normscope.curvature import dense_empirical_fisher, dense_ggn, dense_jacobian
from normscope.curvature.gram import (
    FisherFactor,
    build_gram,
    hutchinson_traces,
    vectors_per_chunk,
)
from normscope.errors import ConfigError, UnknownNameError

from tests.helpers import bn_mlp, classification_data


def _subject(loss="cross_entropy", bn_mode="train", batch_size=None, n=10):
    x, _ = classification_data(n=n, dtype=torch.float64)
    y = torch.arange(n) % 3  # every class present, so C = 3
    return Subject(bn_mlp(torch.float64), (x, y), loss=loss, bn_mode=bn_mode, batch_size=batch_size)


def _dense_fisher(s: Subject, kind: str) -> torch.Tensor:
    """The Fisher of ``kind`` from dense ground truth (autograd Jacobian, output Hessian)."""
    if kind in ("true", "ggn"):
        return dense_ggn(s)
    if kind == "empirical":
        return dense_empirical_fisher(s)
    jac = dense_jacobian(s)
    return jac.T @ jac / s.num_terms


def test_unknown_kind_is_refused():
    with pytest.raises(UnknownNameError, match="Fisher kind"):
        FisherFactor(_subject(), "hessian")


@pytest.mark.parametrize("kind", ["true", "ggn", "empirical", "ntk"])
@pytest.mark.parametrize(("bn_mode", "batch_size"), [("train", None), ("eval", None), ("train", 4)])
def test_factor_squares_to_the_dense_fisher(kind, bn_mode, batch_size):
    factor = FisherFactor(_subject(bn_mode=bn_mode, batch_size=batch_size), kind)
    eye = torch.eye(factor.num_rows, dtype=torch.float64)
    a = factor.transpose_apply(eye)
    assert torch.allclose(a.T @ a, _dense_fisher(factor.subject, kind), atol=1e-11)
    v = torch.randn(2, factor.num_params, generator=torch.Generator().manual_seed(0)).double()
    assert torch.allclose(factor.apply(v), v @ a.T, atol=1e-12)
    assert torch.allclose(factor.fisher_apply(v), v @ (a.T @ a), atol=1e-11)


@pytest.mark.parametrize("kind", ["true", "empirical", "ntk"])
@pytest.mark.parametrize(("bn_mode", "batch_size"), [("train", None), ("eval", None), ("train", 4)])
def test_dense_and_chunked_gram_match_the_dense_factor(kind, bn_mode, batch_size):
    factor = FisherFactor(_subject(bn_mode=bn_mode, batch_size=batch_size), kind)
    a = factor.transpose_apply(torch.eye(factor.num_rows, dtype=torch.float64))
    dense = build_gram(factor, dense=True)
    chunked = build_gram(factor, dense=False, max_memory_mb=0.05)
    assert dense.path == "dense-jacobian" and chunked.path == "chunked-gram"
    assert 1 <= chunked.chunk < factor.num_rows
    for built in (dense, chunked):
        assert torch.allclose(built.gram, a @ a.T, atol=1e-11, rtol=1e-9)
        assert torch.allclose(built.fisher_diagonal, a.pow(2).sum(dim=0), atol=1e-12, rtol=1e-9)


def test_chunk_size_shrinks_with_the_memory_budget():
    factor = FisherFactor(_subject(), "ntk")
    big, small = vectors_per_chunk(factor, 100.0), vectors_per_chunk(factor, 0.01)
    assert big == factor.num_rows
    assert 1 <= small < big


def test_budget_must_be_positive():
    with pytest.raises(ConfigError, match="max_memory_mb"):
        build_gram(FisherFactor(_subject(), "ntk"), max_memory_mb=0)


def test_hutchinson_traces_agree_with_exact_traces_within_their_error_bars():
    factor = FisherFactor(_subject(n=16), "true")
    gram = build_gram(factor).gram
    est = hutchinson_traces(factor, 200, seed=3)
    assert abs(est.trace - float(gram.trace())) <= 4 * est.trace_stderr
    assert abs(est.trace_of_square - float(gram.pow(2).sum())) <= 4 * est.trace_of_square_stderr


def test_deflated_hutchinson_covers_only_the_rest_of_the_spectrum():
    factor = FisherFactor(_subject(n=16), "true")
    values, vectors = torch.linalg.eigh(build_gram(factor).gram)
    top = vectors[:, -5:].T
    est = hutchinson_traces(factor, 50, seed=1, deflate=top)
    rest = values[:-5]
    assert abs(est.trace - float(rest.sum())) <= 4 * est.trace_stderr + 1e-12
    assert abs(est.trace_of_square - float(rest.pow(2).sum())) <= 4 * est.trace_of_square_stderr


def test_hutchinson_in_parameter_space_agrees_with_exact_traces():
    factor = FisherFactor(_subject(n=16), "true")
    built = build_gram(factor)
    est = hutchinson_traces(factor, 200, seed=3, space="params")
    assert abs(est.trace - float(built.gram.trace())) <= 4 * est.trace_stderr
    squares = float(built.gram.pow(2).sum())
    assert abs(est.trace_of_square - squares) <= 4 * est.trace_of_square_stderr


def test_true_fisher_needs_a_likelihood_and_ggn_takes_a_callable_loss():
    x, _ = classification_data(n=8, dtype=torch.float64)
    y = torch.arange(8) % 3

    def smooth_ce(out, target):
        return torch.nn.functional.cross_entropy(out, target, label_smoothing=0.1)

    s = Subject(bn_mlp(torch.float64), (x, y), loss=smooth_ce)
    with pytest.raises(ConfigError, match="kind='ggn'"):
        FisherFactor(s, "true")
    factor = FisherFactor(s, "ggn")
    a = factor.transpose_apply(torch.eye(factor.num_rows, dtype=torch.float64))
    assert torch.allclose(a.T @ a, dense_ggn(s), atol=1e-11)
