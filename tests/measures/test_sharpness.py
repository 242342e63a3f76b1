from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normscope.curvature import dense_hessian, parameter_blocks
from normscope.errors import ConfigError
from normscope.measures.sharpness import hessian_density, hessian_trace, sharpness

from tests.curvature.models import MODELS, subject

_CACHE: dict = {}


def exact(name, bn_mode):
    """Symmetrized finite-difference Hessian and its eigenvalues (ascending)."""
    if (name, bn_mode) not in _CACHE:
        h = dense_hessian(subject(name, bn_mode))
        h = (h + h.T) / 2
        _CACHE[name, bn_mode] = (h, torch.linalg.eigvalsh(h))
    return _CACHE[name, bn_mode]


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("name", MODELS)
def test_sharpness_matches_finite_difference_hessian(name, bn_mode):
    _, eigenvalues = exact(name, bn_mode)
    m = sharpness(subject(name, bn_mode), k=3, tol=1e-6)
    assert math.isclose(m.value, float(eigenvalues[-1]), rel_tol=1e-6)
    np.testing.assert_allclose(
        m.details["eigenvalues"], eigenvalues.flip(0)[:3].numpy(), rtol=1e-6, atol=1e-9
    )
    assert m.details["converged"]
    assert m.cost["hvp"] > 0


def test_returned_eigenvectors_are_eigenvectors_of_the_dense_hessian():
    h, _ = exact("residual", "train")
    m = sharpness(subject("residual", "train"), k=2, tol=1e-8, return_vectors=True)
    vecs = torch.as_tensor(m.details["eigenvectors"])
    for lam, v in zip(m.details["eigenvalues"], vecs, strict=True):
        assert torch.allclose(h @ v, lam * v, atol=1e-6)
    assert "eigenvectors" not in sharpness(subject("residual", "train"), tol=1e-3).details


def test_warm_start_from_previous_eigenvectors_needs_fewer_products():
    s = subject("cnn_batchnorm", "train")
    cold = sharpness(s, tol=1e-6, return_vectors=True)
    warm = sharpness(s, tol=1e-6, init_vectors=cold.details["eigenvectors"])
    assert warm.cost["hvp"] < cold.cost["hvp"]
    assert math.isclose(warm.value, cold.value, rel_tol=1e-9)


@pytest.mark.parametrize(("name", "bn_mode"), [("residual", "train"), ("cnn_batchnorm", "eval")])
def test_per_layer_sharpness_matches_dense_diagonal_blocks(name, bn_mode):
    h, _ = exact(name, bn_mode)
    s = subject(name, bn_mode)
    m = sharpness(s, tol=1e-7, per_layer=True)
    blocks = parameter_blocks(s)
    assert m.details["layer_names"] == list(blocks)
    want = [float(torch.linalg.eigvalsh(h[i][:, i])[-1]) for i in blocks.values()]
    np.testing.assert_allclose(m.details["layer_values"], want, rtol=1e-6, atol=1e-9)
    assert m.cost["forward"] == 1, "all layers share one linearization"


def test_hutchinson_trace_is_unbiased_over_seeds():
    h, _ = exact("mlp_batchnorm", "train")
    s = subject("mlp_batchnorm", "train")
    estimates = [
        hessian_trace(s, method="hutchinson", num_probes=8, seed=i).value for i in range(40)
    ]
    mean, error = np.mean(estimates), np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(mean - float(torch.trace(h))) < 3 * error


def test_hutchpp_beats_hutchinson_on_a_real_hessian_with_the_same_products():
    h, _ = exact("cnn_batchnorm", "eval")
    s = subject("cnn_batchnorm", "eval")
    truth = float(torch.trace(h))

    def rms_error(method):
        runs = [hessian_trace(s, method=method, num_probes=24, seed=i) for i in range(12)]
        assert all(r.cost["hvp"] == 24 for r in runs)
        return math.sqrt(np.mean([(r.value - truth) ** 2 for r in runs]))

    assert rms_error("hutchpp") < rms_error("hutchinson")


def test_trace_reports_standard_error():
    m = hessian_trace(subject("mlp_layernorm", "train"), num_probes=30)
    assert m.details["standard_error"] > 0 and m.settings["method"] == "hutchinson"


@pytest.mark.parametrize("method", ["xtrace", "hutchpp"])
def test_sketched_traces_are_unbiased_over_seeds_on_a_real_hessian(method):
    h, _ = exact("mlp_batchnorm", "train")
    s = subject("mlp_batchnorm", "train")
    estimates = [hessian_trace(s, method=method, num_probes=8, seed=i).value for i in range(40)]
    mean, error = np.mean(estimates), np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(mean - float(torch.trace(h))) < 3 * error


def test_density_with_full_lanczos_puts_nodes_on_exact_eigenvalues():
    _, eigenvalues = exact("mlp_rmsnorm", "train")
    s = subject("mlp_rmsnorm", "train")
    m = hessian_density(s, num_probes=2, num_steps=s.num_params, num_points=2000)
    nodes = m.details["nodes"][m.details["weights"] > 1e-8]
    gaps = np.abs(nodes[:, None] - eigenvalues.numpy()[None]).min(axis=1)
    assert gaps.max() < 1e-6
    assert math.isclose(m.value, float(eigenvalues[-1]), rel_tol=1e-6)
    np.testing.assert_allclose(m.details["weights"].sum(axis=1), 1.0, atol=1e-12)
    assert math.isclose(np.trapezoid(m.details["density"], m.details["grid"]), 1.0, abs_tol=1e-3)


def test_density_trace_is_the_hutchinson_estimate_of_the_same_probes():
    h, _ = exact("mlp_batchnorm", "eval")
    s = subject("mlp_batchnorm", "eval")
    runs = [
        hessian_density(s, num_probes=4, num_steps=20, seed=i).details["trace"] for i in range(15)
    ]
    error = np.std(runs, ddof=1) / math.sqrt(len(runs))
    assert abs(np.mean(runs) - float(torch.trace(h))) < 3 * error


@pytest.mark.parametrize(("name", "bn_mode"), [("mlp_batchnorm", "train"), ("residual", "eval")])
def test_smallest_eigenvalues_match_the_finite_difference_hessian(name, bn_mode):
    _, eigenvalues = exact(name, bn_mode)
    m = sharpness(subject(name, bn_mode), k=2, which="smallest", tol=1e-7)
    assert eigenvalues[0] < 0, "the test needs a saddle"
    assert math.isclose(m.value, float(eigenvalues[0]), rel_tol=1e-6)
    np.testing.assert_allclose(m.details["eigenvalues"], eigenvalues[:2].flip(0).numpy(), rtol=1e-6)


def test_both_ends_give_lambda_max_as_value_and_lambda_min_in_details():
    _, eigenvalues = exact("mlp_layernorm", "train")
    s = subject("mlp_layernorm", "train")
    m = sharpness(s, k=2, which="both", tol=1e-7, return_vectors=True, per_layer=True)
    assert math.isclose(m.value, float(eigenvalues[-1]), rel_tol=1e-6)
    assert math.isclose(m.details["lambda_min"], float(eigenvalues[0]), rel_tol=1e-6)
    want = torch.cat([eigenvalues[-2:].flip(0), eigenvalues[:2].flip(0)]).numpy()
    np.testing.assert_allclose(m.details["eigenvalues"], want, rtol=1e-6)
    assert m.details["eigenvectors"].shape == (4, s.num_params)
    assert m.settings["which"] == "both"


def test_trace_accepts_the_old_option_name_with_a_note():
    s = subject("mlp_batchnorm", "train")
    old = hessian_trace(s, num_matvecs=12)
    new = hessian_trace(s, num_probes=12)
    assert old.value == new.value and old.settings["num_probes"] == 12
    assert "num_matvecs" not in old.settings
    assert any("'num_matvecs' is now called 'num_probes'" in n for n in old.notes)
    with pytest.raises(ConfigError, match="give 'num_probes' only"):
        hessian_trace(s, num_matvecs=12, num_probes=12)
