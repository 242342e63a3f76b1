from __future__ import annotations

import pytest
import torch

from normscope import Subject
from normscope.curvature import OutputJacobian
from normscope.curvature.gram import (
    FisherFactor,
    build_gram,
    hutchinson_traces,
    output_blocks,
    vectors_per_chunk,
)
from normscope.errors import ConfigError, UnknownNameError

from tests.helpers import bn_mlp, classification_data


def _subject(loss="cross_entropy", bn_mode="train", batch_size=None, n=10):
    x, _ = classification_data(n=n, dtype=torch.float64)
    y = torch.arange(n) % 3  # every class present, so C = 3
    return Subject(bn_mlp(torch.float64), (x, y), loss=loss, bn_mode=bn_mode, batch_size=batch_size)


def _dense_factor(factor: FisherFactor) -> torch.Tensor:
    """``A`` built from the dense Jacobian and the blocks, row by row."""
    jac = OutputJacobian(factor.subject).dense()
    n, m, c = factor.blocks.shape
    return torch.einsum("iac,icp->iap", factor.blocks, jac.reshape(n, c, -1)).reshape(n * m, -1)


def test_true_blocks_square_to_the_softmax_hessian():
    s = _subject()
    out = OutputJacobian(s).outputs
    blocks = output_blocks(s, out, "true") * len(out) ** 0.5
    for i in range(len(out)):
        hess = torch.autograd.functional.hessian(
            lambda z, i=i: torch.nn.functional.cross_entropy(z.unsqueeze(0), s.data.y[i : i + 1]),
            out[i],
        )
        assert torch.allclose(blocks[i] @ blocks[i], hess, atol=1e-12)
        assert torch.allclose(blocks[i], blocks[i].T)


def test_empirical_blocks_are_the_loss_gradients_in_the_outputs():
    s = _subject(loss="mse")
    out = OutputJacobian(s).outputs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(s.loss_of(out, s.data.y) * len(out), out)
    blocks = output_blocks(s, out.detach(), "empirical") * len(out) ** 0.5
    assert blocks.shape == (10, 1, 3)
    assert torch.allclose(blocks[:, 0], grad, atol=1e-12)


def test_unknown_kind_is_refused():
    with pytest.raises(UnknownNameError, match="Fisher kind"):
        FisherFactor(_subject(), "hessian")


@pytest.mark.parametrize("kind", ["true", "empirical", "ntk"])
@pytest.mark.parametrize(("bn_mode", "batch_size"), [("train", None), ("eval", None), ("train", 4)])
def test_dense_and_chunked_gram_match_the_dense_factor(kind, bn_mode, batch_size):
    factor = FisherFactor(_subject(bn_mode=bn_mode, batch_size=batch_size), kind)
    a = _dense_factor(factor)
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
