"""Edge of stability (Cohen et al. 2021) on a small real-data net, measured by the Tracker.

Full-batch GD with MSE on 256 digits, a 64-64 tanh MLP without normalization, lr = 0.3
(2/lr = 6.67). Measured on this stack: sharpness starts at 10.3, drops to 6.1 after the
first steps, sharpens progressively to 7.7 by step 180, and from step 240 on hovers in
[6.67, 6.99] while the loss keeps falling. The checks: the threshold is reached (max
sharpness >= 2/lr), and over the last 150 steps the sharpness stays within 10 % of 2/lr.
"""

from __future__ import annotations

import numpy as np

from normscope import Subject, data, nets
from normscope.train import Tracker, train

LR = 0.3


def test_sharpness_rises_to_two_over_lr_and_hovers_there():
    d = data.load("digits", n=256, seed=0)
    model = nets.mlp(
        input_shape=d.input_shape, output_dim=10, width=64, depth=2, activation="tanh", seed=0
    )
    s = Subject(model, d, loss="mse")
    tracker = Tracker(["loss", "sharpness"], every=20, options={"sharpness": {"tol": 1e-3}})
    result = train(s, lr=LR, steps=500, tracker=tracker)
    assert result.stopped == "completed"
    steps, sharp = tracker.series("sharpness")
    _, loss = tracker.series("loss")
    threshold = 2 / LR
    assert sharp.max() >= threshold
    late = sharp[steps >= 350]
    assert np.all(np.abs(late / threshold - 1) < 0.10), late
    assert loss[-1] < 0.1 * loss[0]
