"""Tracking at the midpoint of two consecutive iterates (Tracker(point="midpoint"))."""

from __future__ import annotations

import pytest
import torch

from normscope import Subject
from normscope.errors import UnknownNameError
from normscope.testing import model_state
from normscope.train import Tracker, train

from tests.helpers import bn_mlp, classification_data


def _subject(batch_size=None):
    x, y = classification_data(n=32, dtype=torch.float64)
    return Subject(bn_mlp(torch.float64), (x, y), batch_size=batch_size)


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "gd", "weight_decay": 0.01},
        {"optimizer": "gd", "momentum": 0.9},
        {"optimizer": "sgd", "momentum": 0.5},
    ],
    ids=["gd+wd", "gd+momentum", "sgd+momentum"],
)
def test_midpoint_tracking_leaves_the_trajectory_unchanged(options):
    """The next iterate is tried and undone: parameters, running statistics, momentum
    buffers and the mini-batch generator end exactly as without the tracker."""
    batch = 8 if options["optimizer"] == "sgd" else None
    plain, tracked = _subject(batch), _subject(batch)
    train(plain, lr=0.1, steps=7, **options)
    tracker = Tracker(["loss"], every=2, point="midpoint", track_weight_norms=False)
    train(tracked, lr=0.1, steps=7, tracker=tracker, **options)
    before, after = model_state(plain.model).tensors, model_state(tracked.model).tensors
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name
    assert len(tracker.series("loss")[0]) == 5  # steps 0, 2, 4, 6 and the end, 7


def test_midpoint_measure_is_the_measure_at_the_average_of_two_iterates():
    lr, wd = 0.2, 0.05
    tracked = _subject()
    tracker = Tracker(["loss"], every=3, point="midpoint", track_weight_norms=False)
    train(tracked, lr=lr, weight_decay=wd, steps=3, tracker=tracker)

    reference = _subject()
    train(reference, lr=lr, weight_decay=wd, steps=3)
    theta_3 = reference.theta.clone()
    train(reference, lr=lr, weight_decay=wd, steps=1)
    midpoint = (theta_3 + reference.theta) / 2
    steps, values = tracker.series("loss")
    assert steps.tolist() == [0, 3]
    assert values[1] == pytest.approx(float(reference.loss(midpoint)), rel=1e-12)
    assert values[1] != pytest.approx(float(reference.loss(theta_3)), rel=1e-6)  # not θ_3


def test_unknown_tracking_point_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="midpoint"):
        Tracker(["loss"], point="centre")
