"""fisher_spectrum / fisher_trace / sample_gradient_norms against dense P x P ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from normscope import Subject
from normscope.errors import ConfigError, UnknownNameError
from normscope.measures.fisher import fisher_spectrum, fisher_trace, sample_gradient_norms

from tests.helpers import bn_mlp, classification_data

N = 12


def _subject(loss="cross_entropy", bn_mode="train", batch_size=None, model=None):
    x, _ = classification_data(n=N, dtype=torch.float64)
    y = torch.arange(N) % 3  # every class present, so C = 3
    model = bn_mlp(torch.float64) if model is None else model
    return Subject(model, (x, y), loss=loss, bn_mode=bn_mode, batch_size=batch_size)


def _outputs(s: Subject, theta: torch.Tensor) -> torch.Tensor:
    return torch.cat([s.output(theta, b.inputs) for b in s.batches()])


def _targets(s: Subject) -> torch.Tensor:
    return torch.cat([b.targets for b in s.batches()])


def _autograd_jacobian(s: Subject) -> torch.Tensor:
    """``d f / d theta`` of the whole-batch function, one output entry at a time."""
    theta = s.theta.requires_grad_(True)
    flat = _outputs(s, theta).reshape(-1)
    rows = [torch.autograd.grad(flat[j], theta, retain_graph=True)[0] for j in range(len(flat))]
    return torch.stack(rows)


def _output_hessians(s: Subject, out: torch.Tensor) -> torch.Tensor:
    """Hessian of each sample's loss in its own outputs, by autograd: ``(N, C, C)``."""
    return torch.stack(
        [
            torch.autograd.functional.hessian(
                lambda z, i=i: s.loss_of(z.unsqueeze(0), _targets(s)[i : i + 1]), out[i]
            )
            for i in range(len(out))
        ]
    )


def _sample_gradients(s: Subject) -> torch.Tensor:
    """Gradient of each sample's loss under the whole-batch function, one at a time."""
    theta = s.theta.requires_grad_(True)
    out = _outputs(s, theta)
    return torch.stack(
        [
            torch.autograd.grad(
                s.loss_of(out[i : i + 1], _targets(s)[i : i + 1]), theta, retain_graph=True
            )[0]
            for i in range(len(out))
        ]
    )


def _dense_fisher(s: Subject, kind: str) -> torch.Tensor:
    """The ``P x P`` Fisher, built without the Gram machinery."""
    if kind == "empirical":
        g = _sample_gradients(s)
        return g.T @ g / N
    jac = _autograd_jacobian(s)
    if kind == "ntk":
        return jac.T @ jac / N
    q = torch.block_diag(*_output_hessians(s, _outputs(s, s.theta).detach()))
    return jac.T @ q @ jac / N


def _check_spectrum(m, fisher: torch.Tensor) -> None:
    dense = torch.linalg.eigvalsh(fisher).flip(0)
    got = torch.as_tensor(m.details["eigenvalues"])
    rank = len(got)
    assert torch.allclose(got, dense[:rank], rtol=1e-9, atol=1e-12 * float(dense[0]))
    assert float(dense[rank:].abs().max()) < 1e-9 * float(dense[0])
    p = fisher.shape[0]
    assert m.value == pytest.approx(float(dense[0]), rel=1e-10)
    assert m.details["mean"] == pytest.approx(float(fisher.trace()) / p, rel=1e-10)
    assert m.details["second_moment"] == pytest.approx(float(fisher.pow(2).sum()) / p, rel=1e-9)


CASES = [("train", None), ("eval", None), ("train", 4)]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("kind", ["true", "empirical", "ntk"])
@pytest.mark.parametrize(("bn_mode", "batch_size"), CASES)
def test_gram_eigenvalues_are_the_nonzero_eigenvalues_of_the_dense_fisher(
    kind, loss, bn_mode, batch_size
):
    s = _subject(loss, bn_mode, batch_size)
    m = fisher_spectrum(s, kind=kind)
    assert m.settings["path"] == "dense-jacobian"
    assert m.details["gram_size"] == (N if kind == "empirical" else 3 * N)
    _check_spectrum(m, _dense_fisher(s, kind))


def test_true_fisher_is_the_ntk_fisher_under_mse():
    s = _subject("mse")
    true, ntk = fisher_spectrum(s, kind="true"), fisher_spectrum(s, kind="ntk")
    assert np.allclose(true.details["eigenvalues"], ntk.details["eigenvalues"], rtol=1e-12)


@pytest.mark.parametrize("kind", ["true", "empirical"])
def test_chunked_path_equals_dense_path(kind):
    s = _subject()
    dense = fisher_spectrum(s, kind=kind)
    chunked = fisher_spectrum(s, kind=kind, max_memory_mb=0.005)
    assert chunked.settings["path"] == "chunked-gram"
    assert any("chunked-gram" in n for n in chunked.notes)
    for key in ("eigenvalues", "layer_shares", "mean_gradient_overlap"):
        assert np.allclose(chunked.details[key], dense.details[key], rtol=1e-9, atol=1e-12)
    assert chunked.details["second_moment"] == pytest.approx(dense.details["second_moment"])


@pytest.mark.parametrize("kind", ["true", "ntk"])
def test_lanczos_path_top_eigenvalues_match_the_dense_path(kind):
    s = _subject()
    dense = fisher_spectrum(s, kind=kind)
    top = fisher_spectrum(s, kind=kind, k=4, max_gram_size=10, num_probes=60, seed=2)
    assert top.settings["path"] == "lanczos"
    assert top.details["lanczos_converged"]
    rel = np.abs(top.details["eigenvalues"] - dense.details["eigenvalues"][:4])
    assert (rel <= 1e-8 * dense.details["eigenvalues"][:4]).all()
    # deflated Hutchinson: the top 4 exactly, the rest within its error bar
    err = abs(top.details["mean"] - dense.details["mean"])
    assert err <= 4 * top.details["mean_stderr"] + 1e-12
    err = abs(top.details["second_moment"] - dense.details["second_moment"])
    assert err <= 4 * top.details["second_moment_stderr"] + 1e-12


def _dense_top_eigenvectors(fisher: torch.Tensor, k: int) -> torch.Tensor:
    _, vectors = torch.linalg.eigh(fisher)
    return vectors[:, -k:].flip(1).T


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_mean_gradient_overlap_matches_dense_projection(bn_mode):
    s = _subject("mse", bn_mode)
    m = fisher_spectrum(s, kind="true", k=3)
    jac = _autograd_jacobian(s).reshape(N, 3, -1)
    basis = torch.linalg.qr(jac.mean(dim=0).T).Q  # (P, C) orthonormal
    top = _dense_top_eigenvectors(_dense_fisher(s, "true"), 3)
    want = (top @ basis).pow(2).sum(dim=1)
    assert np.allclose(m.details["mean_gradient_overlap"], want.numpy(), atol=1e-8)


def _output_bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 3), nn.BatchNorm1d(3, affine=False)
    ).double()


def test_overlap_is_zero_when_batch_norm_centres_the_outputs():
    m = fisher_spectrum(_subject("mse", model=_output_bn_model()), kind="ntk", k=2)
    assert np.array_equal(m.details["mean_gradient_overlap"], np.zeros(2))
    assert any("mean output gradients vanish" in n for n in m.notes)


def test_layer_shares_are_per_module_traces_of_the_dense_fisher():
    s = _subject()
    m = fisher_spectrum(s, kind="true")
    diag = _dense_fisher(s, "true").diagonal()
    want = [
        sum(float(diag[s.layout.slice(n)].sum()) for n in g.params) / float(diag.sum())
        for g in s.param_groups()
    ]
    assert m.details["layer_names"] == [g.name for g in s.param_groups()]
    assert np.allclose(m.details["layer_shares"], want, rtol=1e-10)
    assert m.details["layer_shares"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["true", "empirical", "ntk"])
def test_fisher_trace_is_trace_over_parameter_count(kind):
    s = _subject(batch_size=6)
    fisher = _dense_fisher(s, kind)
    exact = fisher_trace(s, kind=kind)
    assert exact.value == pytest.approx(float(fisher.trace()) / s.num_params, rel=1e-10)
    assert exact.details["trace"] == pytest.approx(float(fisher.trace()), rel=1e-10)
    est = fisher_trace(s, kind=kind, num_probes=100, seed=4)
    assert abs(est.value - exact.value) <= 4 * est.details["mean_stderr"]


@pytest.mark.parametrize(("bn_mode", "batch_size"), CASES)
def test_sample_gradient_norms_match_autograd(bn_mode, batch_size):
    s = _subject(bn_mode=bn_mode, batch_size=batch_size)
    grads = _sample_gradients(s)
    m = sample_gradient_norms(s, max_memory_mb=0.05)
    assert np.allclose(m.details["norms"], grads.norm(dim=1).numpy(), rtol=1e-10)
    assert m.value == pytest.approx(float(grads.norm(dim=1).mean()), rel=1e-10)
    theta = s.theta.requires_grad_(True)
    (full,) = torch.autograd.grad(s.loss(theta), theta)
    assert m.details["mean_gradient_norm"] == pytest.approx(float(full.norm()), rel=1e-10)


def test_bad_options_are_refused_with_a_message():
    s = _subject()
    with pytest.raises(UnknownNameError, match=r"kind='gauss-newton'.*Valid values of kind"):
        fisher_spectrum(s, kind="gauss-newton")
    with pytest.raises(UnknownNameError, match="Did you mean 'true'"):
        fisher_spectrum(s, kind="Tru")
    with pytest.raises(ConfigError, match="k must be"):
        fisher_spectrum(s, k=0)
    with pytest.raises(ConfigError, match="max_memory_mb"):
        fisher_trace(s, max_memory_mb=-1.0)
