from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from normscope import Subject
from normscope.curvature import dense_hessian, group_index
from normscope.measures.spherical import spherical_sharpness

from tests.curvature.models import data


def _model(scale: float = 1.0, norm: str = "layer") -> nn.Module:
    """Linear -> norm (epsilon ~0, so invariance is exact) -> tanh -> Linear."""
    torch.manual_seed(0)
    layer = nn.LayerNorm(5, eps=1e-30) if norm == "layer" else nn.BatchNorm1d(5, eps=1e-30)
    model = nn.Sequential(nn.Linear(4, 5), layer, nn.Tanh(), nn.Linear(5, 3)).double()
    with torch.no_grad():
        model[0].weight.mul_(scale)
        model[0].bias.mul_(scale)
    return model


def test_finds_the_layer_feeding_the_normalization_and_matches_the_dense_block():
    s = Subject(_model(), data())
    m = spherical_sharpness(s, lr=0.1, tol=1e-8)
    assert m.details["groups"] == ["0"]
    index = group_index(s, ("0.weight", "0.bias"))
    h = dense_hessian(s)[index][:, index]
    lam = float(torch.linalg.eigvalsh((h + h.T) / 2)[-1])
    norm_sq = float(s.theta[index].pow(2).sum())
    assert math.isclose(m.value, lam * norm_sq, rel_tol=1e-6)
    assert math.isclose(m.details["effective_lr"], 0.1 / norm_sq, rel_tol=1e-12)
    assert math.isclose(m.details["stability"], 0.1 / norm_sq * m.value, rel_tol=1e-12)


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("c", [0.5, 3.0])
def test_spherical_sharpness_is_scale_invariant_while_raw_sharpness_scales_as_inverse_square(
    norm, c
):
    base = spherical_sharpness(Subject(_model(1.0, norm), data()), tol=1e-9)
    scaled = spherical_sharpness(Subject(_model(c, norm), data()), tol=1e-9)
    assert math.isclose(scaled.value, base.value, rel_tol=1e-6)
    assert math.isclose(
        scaled.details["raw_sharpness"], base.details["raw_sharpness"] / c**2, rel_tol=1e-6
    )


def test_batch_norm_in_eval_mode_is_not_scale_invariant():
    m = spherical_sharpness(Subject(_model(norm="batch"), data(), bn_mode="eval"))
    assert math.isnan(m.value)
    assert m.details["groups"] == [] and "no scale-invariant" in m.notes[0]


def test_per_group_values_for_several_groups():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 5),
        nn.LayerNorm(5),
        nn.Tanh(),
        nn.Linear(5, 5),
        nn.LayerNorm(5),
        nn.Tanh(),
        nn.Linear(5, 3),
    ).double()
    subject = Subject(model, data())
    m = spherical_sharpness(subject, lr=0.5)
    assert m.details["groups"] == ["0", "3"]
    assert len(m.details["group_values"]) == 2 and len(m.details["group_effective_lr"]) == 2
    assert "0, 3" in m.notes[0]
    # Each group's scalars are its own Hessian block's: lr * lambda_max(H_gg) against the
    # dense block, and at most the union's (a diagonal block of a symmetric matrix).
    hessian = dense_hessian(subject)
    for i, name in enumerate(["0", "3"]):
        index = group_index(subject, subject.scale_invariant_groups()[i].params)
        top = torch.linalg.eigvalsh(hessian[index][:, index])[-1].item()
        assert m.details[f"stability.{name}"] == pytest.approx(0.5 * top, rel=1e-6)
        norm_sq = subject.theta[index].pow(2).sum().item()
        assert m.details[f"weight_norm_sq.{name}"] == pytest.approx(norm_sq, rel=1e-12)
        assert m.details[f"group_value.{name}"] == pytest.approx(m.details["group_values"][i])
        assert m.details[f"stability.{name}"] <= m.details["stability"] * (1 + 1e-6)
