"""lyu2022 on a small real-data net: GD + weight decay on a scale-invariant net reaches the
edge of stability on the sphere (effective lr x spherical sharpness -> 2), and then the
spherical sharpness keeps falling while the weight norm shrinks.

Setting (the quick size of the lyu2022 reproduction, one run): 256 digits, MSE, a 64-64
tanh MLP with batch norm after both hidden linears (full-batch statistics), only the
hidden weights trained (scale invariant), lr = 0.1, weight decay 0.01 on them, 1200
steps, tracked every 100 steps. Measured here: the product eff_lr x S starts at 0.99,
reaches 2.0 by step 500 and stays in [2.01, 2.25]; S falls from 810 at step 600 to 307
at step 1200. The tolerance on the product (15 %) is the reproduction's; the
decrease is checked on the tracked values after the edge is reached.
"""

from __future__ import annotations

import numpy as np

from normscope import Subject, data, nets
from normscope.train import Tracker, train

LR, WD = 0.1, 0.01


def test_gd_with_weight_decay_reaches_the_edge_on_the_sphere_then_reduces_sharpness():
    d = data.load("digits", n=256, seed=0)
    model = nets.mlp(
        input_shape=d.input_shape,
        output_dim=10,
        width=64,
        depth=2,
        activation="tanh",
        norm="batch",
        bias=False,
        seed=0,
    )
    s = Subject(model, d, loss="mse", params=["fc*"])
    tracker = Tracker(
        ["spherical_sharpness"], every=100, options={"spherical_sharpness": {"tol": 1e-3}}
    )
    result = train(s, lr=LR, weight_decay=WD, wd_on="scale_invariant", steps=1200, tracker=tracker)
    assert result.stopped == "completed"
    steps, stability = tracker.series("spherical_sharpness.stability")
    _, spherical = tracker.series("spherical_sharpness")
    late = steps >= 600
    assert stability[0] < 0.75 * 2, "starts well below the edge"
    assert np.all(np.abs(stability[late] / 2 - 1) < 0.15), stability[late]
    assert spherical[late][-1] < 0.6 * spherical[late][0], spherical[late]
    slope = np.polyfit(steps[late], np.log(spherical[late]), 1)[0]
    assert -2.5 * LR * WD <= slope < 0
