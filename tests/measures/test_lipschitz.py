"""input_lipschitz and param_lipschitz against dense Jacobians (hiddenpower2025)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import normscope
from normscope import measures, nets
from normscope.curvature.jacobian import OutputJacobian
from normscope.data import Dataset
from normscope.measures.gradients import log_slope
from normscope.testing import changes, model_state

from tests.helpers import bn_mlp, classification_data


def _data(n=12, d_in=6, classes=3, seed=1):
    x, y = classification_data(n=n, d_in=d_in, classes=classes, seed=seed, dtype=torch.float64)
    return Dataset(x, y, task="classification", num_classes=classes)


def _conv_net():
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Unflatten(1, (1, 2, 3)),
        nn.Conv2d(1, 4, 2, padding=1),
        nn.BatchNorm2d(4),
        nn.GELU(),
        nn.Flatten(),
        nn.Linear(48, 3),
    ).double()
    with torch.no_grad():
        model[2].running_var.uniform_(0.5, 2.0)
    return model


def _plain_mlp():
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 8), nn.GELU(), nn.Linear(8, 3)
    ).double()


def _exact_max_jacobian_norm(s, points):
    """max over the points of the dense Jacobian's spectral norm (whole batch if coupled)."""
    best = 0.0
    with s.modes():
        for x in points:
            if s.samples_coupled:
                jac = torch.autograd.functional.jacobian(lambda z: s.output(s.theta, z), x)
                best = max(
                    best,
                    float(
                        torch.linalg.matrix_norm(
                            jac.reshape(jac.shape[0] * jac.shape[1], -1), ord=2
                        )
                    ),
                )
            else:
                for xi in x:
                    jac = torch.autograd.functional.jacobian(
                        lambda z: s.output(s.theta, z.unsqueeze(0))[0], xi
                    )
                    best = max(
                        best, float(torch.linalg.matrix_norm(jac.reshape(jac.shape[0], -1), ord=2))
                    )
    return best


MODELS = {"bn_mlp": lambda: bn_mlp(torch.float64), "conv": _conv_net, "plain": _plain_mlp}


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_bounds_bracket_dense_jacobian_norm_maximized_over_data(model, bn_mode):
    s = normscope.Subject(MODELS[model](), _data(), bn_mode=bn_mode)
    m = measures.input_lipschitz(s, tol=1e-10)
    exact = _exact_max_jacobian_norm(s, [s.first_batch().inputs])
    assert m.details["lower_bound"] == pytest.approx(exact, rel=1e-7)
    assert m.details["lower_bound"] <= m.details["upper_bound"]
    assert exact <= m.details["upper_bound"] * (1 + 1e-9)
    assert m.value == m.details["lower_bound"]


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_projected_ascent_raises_lower_bound_and_stays_below_upper(bn_mode):
    s = normscope.Subject(bn_mlp(torch.float64), _data(), bn_mode=bn_mode)
    base = measures.input_lipschitz(s, tol=1e-10)
    m = measures.input_lipschitz(s, tol=1e-10, ascent_steps=4, ascent_radius=0.3)
    assert m.details["log_lower"] >= base.details["log_lower"] - 1e-12
    assert m.details["log_lower_at_data"] == pytest.approx(base.details["log_lower"])
    assert m.details["log_lower"] <= m.details["log_upper"]
    assert m.details["log_gap"] >= 0


def test_fully_certified_chain_upper_bound_is_product_of_layer_constants():
    model = _plain_mlp()
    s = normscope.Subject(model, _data(), bn_mode="eval")
    m = measures.input_lipschitz(s)
    assert m.details["upper_status"] == "certified"
    gelu_max_slope = 1.1289041451846482  # Phi(sqrt 2) + sqrt 2 phi(sqrt 2)
    want = gelu_max_slope * math.prod(
        float(torch.linalg.svdvals(model[i].weight.detach())[0]) for i in (0, 2, 4)
    )
    assert m.details["upper_bound"] == pytest.approx(want, rel=1e-5)
    assert m.details["uncertified_layers"] == []


def test_bn_eval_is_certified_and_bn_train_is_local():
    for bn_mode, status in (("eval", "certified"), ("train", "local")):
        s = normscope.Subject(_conv_net(), _data(), bn_mode=bn_mode)
        m = measures.input_lipschitz(s)
        assert m.details["upper_status"] == status
        assert ("2" in m.details["uncertified_layers"]) == (bn_mode == "train")


def _lone_norm_subject(norm, n=20, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(n, d, generator=gen, dtype=torch.float64) + 1.0
    y = torch.randn(n, d, generator=gen, dtype=torch.float64)
    # an identity linear layer after the norm gives the Subject parameters to hold
    read_out = nn.Linear(d, d)
    with torch.no_grad():
        read_out.weight.copy_(torch.eye(d))
        read_out.bias.zero_()
    model = nn.Sequential(norm, read_out).double()
    return normscope.Subject(model, (x, y), loss="mse", bn_mode="train")


def test_batch_norm_jacobian_spectral_norm_is_one_over_sigma():
    s = _lone_norm_subject(nn.BatchNorm1d(5, affine=False, eps=1e-5))
    m = measures.input_lipschitz(s, tol=1e-12)
    sigma = torch.sqrt(s.first_batch().inputs.var(dim=0, unbiased=False) + 1e-5)
    want = float((1 / sigma).max())
    assert m.details["lower_bound"] == pytest.approx(want, rel=1e-6)
    assert m.details["upper_bound"] == pytest.approx(want, rel=1e-6)


def test_batch_rms_norm_jacobian_spectral_norm_is_one_over_rms():
    s = _lone_norm_subject(nets.BatchRMSNorm(5, eps=1e-5))
    m = measures.input_lipschitz(s, tol=1e-12)
    rms = torch.sqrt(s.first_batch().inputs.pow(2).mean(dim=0) + 1e-5)
    assert m.details["lower_bound"] == pytest.approx(float((1 / rms).max()), rel=1e-6)
    assert m.details["upper_bound"] == pytest.approx(float((1 / rms).max()), rel=1e-6)


def test_residual_net_reports_lower_bound_only_with_a_note():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(6, 6)
            self.out = nn.Linear(6, 3)

        def forward(self, x):
            return self.out(x + torch.tanh(self.inner(x)))

    s = normscope.Subject(Residual().double(), _data(), bn_mode="eval")
    m = measures.input_lipschitz(s)
    assert m.details["upper_status"] == "unavailable"
    assert math.isinf(m.details["upper_bound"])
    assert any("not a plain chain" in note for note in m.notes)
    assert m.value == pytest.approx(_exact_max_jacobian_norm(s, [s.first_batch().inputs]), rel=1e-6)


def _k_norm_mlp(k, norm, weight_scale=3.0, depth=8):
    placement = list(range(k)) if k else "none"
    return nets.mlp(
        input_shape=(24,),
        output_dim=3,
        width=24,
        depth=depth,
        norm=norm,
        placement=placement,
        activation="identity",
        weight_scale=weight_scale,
        seed=1,
    )


@pytest.mark.parametrize(("norm", "bn_mode"), [("layer", "eval"), ("batch", "train")])
def test_each_norm_layer_cuts_input_lipschitz_exponentially_in_k(norm, bn_mode):
    # K norms after the first K of 8 linear layers, weight scale 3: each norm divides by the
    # std (about 3) of its input, so log L falls about log 3 per norm (hiddenpower2025).
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 24, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    ks = np.arange(6)
    logs = []
    for k in ks:
        s = normscope.Subject(_k_norm_mlp(int(k), norm), (x, y), bn_mode=bn_mode)
        logs.append(measures.input_lipschitz(s, tol=1e-5).details["log_lower"])
    slope, _, r2 = log_slope(ks, np.array(logs))
    assert slope < -0.7
    assert r2 > 0.95


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_depth_1000_weight_scale_10_gives_finite_logs_or_inf_with_note(norm):
    model = nets.mlp(
        input_shape=(8,),
        output_dim=3,
        width=16,
        depth=1000,
        norm=norm,
        activation="identity",
        weight_scale=10.0,
        seed=0,
    )
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 8, generator=gen), torch.arange(16) % 3
    s = normscope.Subject(model, (x, y), bn_mode="train")
    m = measures.input_lipschitz(s, tol=1e-3)
    floats = [v for v in m.details.values() if isinstance(v, float)]
    assert not any(math.isnan(v) for v in [*floats, m.value])
    assert math.isfinite(m.details["log_upper"])
    if norm == "none":
        # each layer multiplies by 10 ||W|| with ||W|| >= 1 for a square Gaussian matrix
        assert m.details["log_upper"] > 1000 * math.log(10.0)
        assert math.isinf(m.value) and any("overflow" in note for note in m.notes)
    else:
        assert math.isfinite(m.details["log_lower"])
        assert m.details["log_lower"] <= m.details["log_upper"]


def test_input_lipschitz_leaves_model_untouched_with_ascent():
    s = normscope.Subject(bn_mlp(torch.float64), _data(), bn_mode="train")
    before = model_state(s.model)
    measures.input_lipschitz(s, ascent_steps=2)
    assert changes(before, s.model) == []


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_param_lipschitz_matches_dense_parameter_jacobian_and_gradient(bn_mode):
    s = normscope.Subject(bn_mlp(torch.float64), _data(), bn_mode=bn_mode)
    m = measures.param_lipschitz(s, tol=1e-10)
    dense = OutputJacobian(s).dense()
    assert m.value == pytest.approx(float(torch.linalg.matrix_norm(dense, ord=2)), rel=1e-7)
    theta = s.theta.requires_grad_(True)
    (gradient,) = torch.autograd.grad(s.loss(theta), theta)
    assert m.details["grad_norm"] == pytest.approx(float(gradient.norm()), rel=1e-10)
    for name, jn, gn in zip(
        m.details["group_names"],
        m.details["group_jacobian_norms"],
        m.details["group_grad_norms"],
        strict=True,
    ):
        cols = s.layout.mask(
            next(g.params for g in s.param_groups() if g.name == name), s.theta
        ).bool()
        assert jn == pytest.approx(float(torch.linalg.matrix_norm(dense[:, cols], ord=2)), rel=1e-6)
        assert gn == pytest.approx(float(gradient[cols].norm()), rel=1e-10)
    assert max(m.details["group_jacobian_norms"]) <= m.value * (1 + 1e-9)
