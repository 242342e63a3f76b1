"""isometry_gap and per-layer signal statistics (meterez2024)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import normscope
from normscope import measures, nets
from normscope.measures.gradients import log_slope
from normscope.measures.signal import trace_layers
from normscope.testing import changes, model_state


def _subject(model, n=8, d=10, seed=0, bn_mode="train"):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return normscope.Subject(model.double(), (x, y), loss="mse", bn_mode=bn_mode)


def _direct_gap(x):
    """phi = log(tr G / n) - (1/n) log det G, from slogdet, independently of the measure."""
    g = x @ x.T
    n = g.shape[0]
    sign, logdet = torch.linalg.slogdet(g)
    assert sign > 0
    return float(torch.log(torch.trace(g) / n) - logdet / n)


def test_isometry_gap_of_last_hidden_layer_matches_direct_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 3))
    s = _subject(model)
    m = measures.isometry_gap(s)
    hidden = torch.tanh(s.model[0](s.first_batch().inputs)).detach()
    assert m.value == pytest.approx(_direct_gap(hidden), rel=1e-10)
    assert m.details["layer_names"] == ["0", "1", "2"]
    assert m.details["isometry_gap"][1] == pytest.approx(m.value, rel=1e-12)


def test_orthogonal_equal_norm_representations_have_zero_gap_full_rank_zero_cosine():
    model = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(10))
    s = _subject(model)
    s.source.inputs[:] = 2.0 * torch.eye(10, dtype=torch.float64)[:8]
    m = measures.isometry_gap(s)
    assert m.value == pytest.approx(0.0, abs=1e-12)
    assert m.details["effective_rank"][0] == pytest.approx(8.0)
    assert m.details["mean_cosine"][0] == pytest.approx(0.0, abs=1e-12)


def test_mean_subtracting_batch_norm_is_projected_and_stated():
    model = nn.Sequential(nn.Linear(10, 12), nn.BatchNorm1d(12, affine=False), nn.Linear(12, 3))
    s = _subject(model)
    auto = measures.isometry_gap(s)
    assert "1" in auto.details["projected_layers"]
    assert math.isfinite(auto.value)
    none = measures.isometry_gap(s, centering="none")
    assert math.isinf(none.value) and none.notes
    ridge = measures.isometry_gap(s, centering="none", eps=1e-3)
    assert math.isfinite(ridge.value) and ridge.value > auto.value
    # batch-normalized channels: zero batch mean, variance var / (var + eps) ~ 1
    assert auto.details["channel_sq_mean"][1] == pytest.approx(0.0, abs=1e-20)
    assert auto.details["channel_var"][1] == pytest.approx(1.0, rel=1e-3)


def test_fewer_features_than_samples_gives_inf_with_note():
    torch.manual_seed(0)
    s = _subject(nn.Sequential(nn.Linear(10, 4), nn.Tanh(), nn.Linear(4, 3)), n=8)
    m = measures.isometry_gap(s)
    assert math.isinf(m.value)
    assert any("singular" in note for note in m.notes)


def test_collapsed_representations_have_cosine_one_and_effective_rank_one():
    model = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 3))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(1.0)
    m = measures.isometry_gap(_subject(model))
    assert m.details["mean_cosine"][0] == pytest.approx(1.0)
    assert m.details["effective_rank"][0] == pytest.approx(1.0)
    assert math.isinf(m.value)


def test_hooks_are_removed_and_model_untouched_even_when_forward_fails():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 12), nn.BatchNorm1d(12), nn.Linear(12, 3))
    s = _subject(model)
    before = model_state(s.model)
    measures.isometry_gap(s)
    assert changes(before, s.model) == []
    with pytest.raises(RuntimeError):
        trace_layers(s, s.theta, torch.randn(4, 7, dtype=torch.float64))
    assert all(not m._forward_hooks for m in s.model.modules())


def test_isometry_gap_decays_with_depth_under_orthogonal_weights():
    # meterez2024 claim 1: linear MLP, width = batch = 64, batch RMS norm, orthogonal weights
    d = 64
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(d, d, generator=gen), torch.arange(d) % 10
    model = nets.mlp(
        input_shape=(d,),
        output_dim=10,
        width=d,
        depth=150,
        norm="batch_rms",
        activation="identity",
        init="orthogonal",
        bias=False,
        seed=0,
    )
    m = measures.isometry_gap(normscope.Subject(model, (x, y), bn_mode="train"))
    names = m.details["layer_names"]
    layer_gaps = zip(names, m.details["isometry_gap"], strict=True)
    gaps = np.array([g for n, g in layer_gaps if n.startswith("norm")])
    assert m.value < 0.5 * gaps[0]
    slope, _, r2 = log_slope(np.arange(len(gaps)), np.log(gaps))
    assert slope < 0 and r2 > 0.9
