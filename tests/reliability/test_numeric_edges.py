"""Numbers at the edge of float32: depth 1000, weights scaled by 10, constant inputs into
batch norm, Hessians with repeated and zero eigenvalues. A measure reports a number (in
log space where it is a product), or inf/nan with a note saying why; it never crashes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normscope import linalg, measures, nets
from normscope.data import Dataset
from normscope.subject import Subject

PRODUCT_MEASURES = ["gradient_norms", "input_lipschitz", "param_lipschitz", "isometry_gap"]


def data(n: int = 8, dim: int = 4, constant: bool = False) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.full((n, dim), 0.7) if constant else torch.randn(n, dim, generator=gen)
    return Dataset(x, torch.arange(n) % 3, num_classes=3, name="edge")


def net(
    depth: int,
    norm: str = "none",
    weight_scale: float = 1.0,
    activation: str = "identity",
    width: int = 8,
):
    return nets.build(
        {
            "arch": "mlp",
            "input_shape": (4,),
            "output_dim": 3,
            "width": width,
            "depth": depth,
            "norm": norm,
            "activation": activation,
            "weight_scale": weight_scale,
        }
    )


def take(subject: Subject, name: str):
    return measures.get(name)(subject, **measures.info(name).quick)


def reported(m) -> None:
    """A finite value, or a non-finite one with a note that mentions it."""
    if math.isfinite(m.value):
        return
    said = " ".join(m.notes).lower()
    assert m.notes and ("inf" in said or "nan" in said or "overflow" in said), (m.value, m.notes)


@pytest.fixture(scope="module")
def overflowing():
    """Depth 1000, linear activations, weights x10: activations pass 1e38 within 40
    layers, so every forward pass overflows float32."""
    return Subject(net(1000, weight_scale=10.0), data())


@pytest.mark.parametrize("name", PRODUCT_MEASURES)
def test_depth_1000_overflow_is_reported_as_inf_with_a_note(overflowing, name):
    m = take(overflowing, name)
    assert not math.isfinite(m.value)
    reported(m)


def test_depth_1000_overflow_keeps_the_lipschitz_upper_bound_in_log_space(overflowing):
    m = measures.get("input_lipschitz")(overflowing, ascent_steps=1)
    assert math.isinf(m.details["upper_bound"])
    # 1000 linear layers, each of spectral norm about 10 * 2 (Gaussian 8x8 matrix) => the
    # log of the product is about 1000 * log(20), finite and far beyond float32's 88.7.
    assert 1000 * math.log(5) < m.details["log_upper"] < 1000 * math.log(100)


@pytest.mark.parametrize("name", ["fisher_spectrum", "fisher_trace", "loss"])
def test_overflow_in_output_space_measures_is_reported_not_raised(overflowing, name):
    reported(take(overflowing, name))


def test_batch_norm_keeps_depth_100_with_weights_x10_finite():
    s = Subject(net(100, norm="batch", weight_scale=10.0, activation="relu"), data())
    for name in ("loss", "gradient_norms"):
        m = take(s, name)
        assert math.isfinite(m.value), (name, m.value, m.notes)


@pytest.mark.parametrize("name", ["loss", "gradient_norms", "fisher_spectrum", "sharpness"])
def test_constant_inputs_into_batch_norm_give_finite_numbers(name):
    """Zero batch variance: batch norm divides by sqrt(eps) alone (the epsilon regime)."""
    s = Subject(net(2, norm="batch", activation="relu"), data(n=16, constant=True))
    m = take(s, name)
    assert math.isfinite(m.value), (m.value, m.notes)
    assert any("epsilon regime" in note for note in m.notes), m.notes


def test_the_epsilon_regime_is_not_claimed_on_ordinary_data_or_in_eval_mode():
    s = Subject(net(2, norm="batch", activation="relu"), data(n=16))
    assert s.batch_norm_in_epsilon_regime() == []
    constant = data(n=16, constant=True)
    assert (
        Subject(net(2, norm="batch"), constant, bn_mode="eval").batch_norm_in_epsilon_regime() == []
    )
    assert Subject(net(2, norm="batch"), constant).batch_norm_in_epsilon_regime() != []


def test_constant_inputs_make_the_representations_collapse_and_the_gap_says_so():
    s = Subject(net(2, norm="batch", activation="relu"), data(n=16, constant=True))
    m = take(s, "isometry_gap")
    assert math.isinf(m.value)
    assert any("singular" in n or "rank collapse" in n for n in m.notes)


def test_sharpness_converges_on_a_hessian_with_many_zero_eigenvalues():
    """Constant inputs through batch norm leave the first layer's weights with no effect
    on the loss: the Hessian has a large null space, and Lanczos must still converge."""
    s = Subject(
        net(2, norm="batch", activation="relu"), data(n=16, constant=True), loss="cross_entropy"
    )
    m = measures.get("sharpness")(s, k=3, tol=1e-4)
    assert m.details["converged"] is True
    values = np.asarray(m.details["eigenvalues"])
    assert np.isfinite(values).all() and values.max() == pytest.approx(m.value)


def test_lanczos_on_repeated_and_zero_eigenvalues_converges_and_says_so():
    spectrum = torch.tensor([3.0, 3.0, 3.0, 1.0] + [0.0] * 60, dtype=torch.float64)
    q, _ = torch.linalg.qr(
        torch.randn(64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    )
    a = q @ torch.diag(spectrum) @ q.T
    top = linalg.lanczos(lambda v: a @ v, 64, k=4, block_size=3, tol=1e-8, dtype=torch.float64)
    assert top.converged
    assert top.eigenvalues.tolist() == pytest.approx([1.0, 3.0, 3.0, 3.0], abs=1e-8)
    # One start vector sees each distinct eigenvalue once; a block of two finds the zero
    # eigenvalue twice.
    bottom = linalg.lanczos(
        lambda v: a @ v, 64, k=2, which="smallest", block_size=2, tol=1e-8, dtype=torch.float64
    )
    assert bottom.converged and bottom.eigenvalues.abs().max() < 1e-8


def test_vanished_gradients_are_noted_not_silent():
    s = Subject(net(100, activation="relu", width=4), data())
    m = measures.get("gradient_norms")(s)
    assert (m.details["norms"] == 0).any(), "this net is chosen so that ReLU kills the gradient"
    assert any("exactly 0" in note for note in m.notes)
