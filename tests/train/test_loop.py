from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import normscope
from normscope import Subject
from normscope.errors import ConfigError, UnknownNameError
from normscope.testing import model_state
from normscope.train import Tracker, train

from tests.helpers import bn_mlp, classification_data


def _scale_invariant_net(dtype=torch.float64, seed=0):
    """Linear -> BatchNorm (no affine) -> ReLU -> frozen output layer: the first layer is
    scale invariant, and the Subject trains only it (lyu2022's setting). Batch norm's
    epsilon is made negligible (1e-14): it is what breaks exact invariance, at order
    eps / variance, and the identity below is exact only for exact invariance."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16, affine=False, eps=1e-14), nn.ReLU(), nn.Linear(16, 3)
    ).to(dtype)


def test_gd_with_weight_decay_obeys_the_exact_norm_identity():
    """||w_{t+1}||^2 = (1 - lr wd)^2 ||w_t||^2 + lr^2 ||grad L(w_t)||^2 on a scale-invariant w."""
    x, y = classification_data(n=32, dtype=torch.float64)
    s = Subject(_scale_invariant_net(), (x, y), params=["0.*"])
    assert {g.name for g in s.scale_invariant_groups()} == {"0"}
    lr, wd = 0.3, 0.05
    for _ in range(5):
        theta = s.theta.requires_grad_(True)
        (grad,) = torch.autograd.grad(s.loss(theta), theta)
        expected = (1 - lr * wd) ** 2 * theta.detach().pow(2).sum() + lr**2 * grad.pow(2).sum()
        train(s, lr=lr, weight_decay=wd, steps=1)
        assert torch.allclose(s.theta.pow(2).sum(), expected, rtol=1e-10, atol=0)


def test_gd_step_equals_the_subject_gradient_step():
    x, y = classification_data(dtype=torch.float64)
    s = Subject(bn_mlp(torch.float64), (x, y))
    theta = s.theta.requires_grad_(True)
    (grad,) = torch.autograd.grad(s.loss(theta), theta)
    train(s, lr=0.1, weight_decay=0.01, steps=1)
    assert torch.allclose(s.theta, theta.detach() * (1 - 0.1 * 0.01) - 0.1 * grad, atol=1e-12)


def test_parameters_outside_the_subject_stay_frozen_and_flags_restored():
    x, y = classification_data(n=32, dtype=torch.float64)
    model = _scale_invariant_net()
    model.eval()
    head = model[3].weight.detach().clone()
    s = Subject(model, (x, y), params=["0.*"])
    train(s, lr=0.1, steps=3)
    assert torch.equal(model[3].weight, head)
    assert model[3].weight.requires_grad and not model.training
    assert not s.theta.equal(Subject(_scale_invariant_net(), (x, y), params=["0.*"]).theta)


def test_weight_decay_only_on_scale_invariant_groups():
    x, y = classification_data(n=32, dtype=torch.float64)
    s = Subject(_scale_invariant_net(), (x, y))
    before = s.theta
    # lr tiny so the change is dominated by decay where decay is on
    train(s, lr=1e-8, weight_decay=1e6, wd_on="scale_invariant", steps=1)
    head = s.layout.slice("3.weight")
    first = s.layout.slice("0.weight")
    assert torch.allclose(s.theta[first], before[first] * (1 - 1e-2), rtol=1e-6)
    assert torch.allclose(s.theta[head], before[head], rtol=1e-6)


def test_sgd_is_deterministic_under_a_seed_and_needs_a_batch_size():
    x, y = classification_data(n=32, dtype=torch.float64)
    runs = []
    for _ in range(2):
        s = Subject(bn_mlp(torch.float64), (x, y), batch_size=8)
        train(s, optimizer="sgd", lr=0.05, steps=5, seed=3)
        runs.append(s.theta)
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ConfigError, match="batch_size"):
        train(Subject(bn_mlp(torch.float64), (x, y)), optimizer="sgd", steps=1)


def test_bad_options_raise_normscope_errors():
    x, y = classification_data(dtype=torch.float64)
    s = Subject(bn_mlp(torch.float64), (x, y))
    with pytest.raises(UnknownNameError, match="gd"):
        train(s, optimizer="adamw")
    with pytest.raises(ConfigError, match="lr"):
        train(s, lr=-1.0)
    with pytest.raises(UnknownNameError):
        train(s, wd_on=["nothing.*"])


def test_divergence_stops_early_with_a_reason():
    x, y = classification_data(dtype=torch.float64)
    s = Subject(bn_mlp(torch.float64), (x, y), loss="mse")
    result = train(s, lr=1e6, steps=50)
    assert result.stopped == "diverged" and result.steps < 50


def test_tracker_records_loss_lr_and_weight_norms_from_a_user_loop():
    x, y = classification_data(n=32, dtype=torch.float64)
    model = _scale_invariant_net()
    tracker = Tracker(["loss"], every=2, data=(x, y), params=["0.*"])
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    for step in range(5):
        if tracker.due(step):
            before = model_state(model)
            tracker.step(model, step, lr=0.1)
            assert all(
                torch.equal(v, model_state(model).tensors[k]) for k, v in before.tensors.items()
            )
        opt.zero_grad()
        nn.functional.cross_entropy(model.train()(x), y).backward()
        opt.step()
    table = tracker.table()
    assert sorted(table.step.unique()) == [0, 2, 4]
    assert set(table.name) >= {"loss", "loss.accuracy", "lr", "two_over_lr", "weight_norm.0"}
    _, values = tracker.series("two_over_lr")
    assert list(values) == [20.0, 20.0, 20.0]


def test_tracker_budget_stops_tracking_with_a_note():
    x, y = classification_data(dtype=torch.float64)
    s = Subject(bn_mlp(torch.float64), (x, y))
    tracker = Tracker(["loss"], every=1, budget_seconds=0.0)
    train(s, lr=0.01, steps=3, tracker=tracker)
    assert tracker.records == [] or tracker.notes


def test_tracker_rejects_options_for_untracked_measures():
    with pytest.raises(ConfigError, match="not tracked"):
        Tracker(["loss"], options={"sharpness": {"k": 2}})


def test_tracker_on_other_data_keeps_every_subject_setting():
    """Measured on a test split, the Subject keeps batch_size, params, loss and bn_mode:
    the same batch-norm statistics as the same measure taken on that split directly."""
    x, y = classification_data(n=32, dtype=torch.float64)
    test = classification_data(n=16, seed=5, dtype=torch.float64)
    s = Subject(bn_mlp(torch.float64), (x, y), loss="mse", batch_size=8, params=["0.*", "3.*"])
    seen = []
    tracker = Tracker(["loss"], data=test, on_measurement=lambda _s, _n, m: seen.append(m))
    tracker.step(s, 0)
    direct = normscope.measures.loss(
        Subject(s.model, test, loss="mse", batch_size=8, params=["0.*", "3.*"])
    )
    assert seen[0].settings == direct.settings and seen[0].value == direct.value
    assert seen[0].settings["batch_size"] == 8 and seen[0].settings["num_samples"] == 16


def test_tracker_passes_lr_only_to_measures_declared_to_take_it():
    x, y = classification_data(n=16, dtype=torch.float64)
    s = Subject(_scale_invariant_net(), (x, y), params=["0.*"])
    seen = {}
    tracker = Tracker(
        ["loss", "spherical_sharpness"],
        on_measurement=lambda _s, name, m: seen.setdefault(name, m),
        options={"spherical_sharpness": {"tol": 1e-3}},
    )
    tracker.step(s, 0, lr=0.05)
    assert seen["spherical_sharpness"].settings["lr"] == 0.05
    assert "lr" not in seen["loss"].settings


def test_tracker_warm_starts_sharpness_from_its_previous_two_calls():
    x, y = classification_data(n=64, dtype=torch.float64)
    s = Subject(bn_mlp(dtype=torch.float64), (x, y))
    tracker = Tracker(["sharpness"], every=5, options={"sharpness": {"tol": 1e-8}})
    info = tracker.infos[0]
    starts, values = [], []

    def spy(subject, *, init_vectors=None, **options):
        starts.append(init_vectors)
        m = info.fn(subject, init_vectors=init_vectors, **options)
        cold = info.fn(subject, tol=1e-8)
        values.append((m.value, cold.value))
        return m

    tracker.infos[0] = dataclasses.replace(info, fn=spy)
    train(s, lr=0.05, steps=20, tracker=tracker)
    shapes = [None if v is None else tuple(v.shape) for v in starts]
    p = s.num_params
    assert shapes == [None, (1, p), (2, p), (2, p), (2, p)]
    for warm, cold in values:
        assert warm == pytest.approx(cold, rel=1e-10)
