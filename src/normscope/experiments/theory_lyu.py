"""Theory columns for the lyu2022 reproduction: the edge-of-stability thresholds of a
gradient-descent run, from its ``[train]`` table.

Registered as ``edge_of_stability``; columns

- ``two_over_lr`` = 2 / lr: the sharpness lambda_max(H) at which gradient descent with
  step lr stops being stable along the top eigenvector (cohen2021);
- ``stability`` = 2: the same threshold for a scale-invariant group w, written on the
  sphere as (lr / ||w||^2) * lambda_max(H_ww) ||w||^2 (lyu2022), so that it can be
  compared with ``spherical_sharpness.stability``;
- ``norm_decay_rate`` = -log (1 - lr wd)^2 ~ 2 lr wd: the fastest rate at which
  log ||w||^2 of a scale-invariant group can fall per step under weight decay wd
  (lyu2022: ||w_{t+1}||^2 = (1 - lr wd)^2 ||w_t||^2 + lr^2 ||grad L(w_t)||^2).
"""

from __future__ import annotations

import math
from typing import Any

from normscope.errors import ConfigError
from normscope.experiments import theory_columns


@theory_columns.register("edge_of_stability")
def edge_of_stability(config: dict[str, Any]) -> dict[str, float]:
    """2 / lr, the spherical threshold 2, the weight-decay norm decay rate and lr * wd
    (lyu2022)."""
    train = config.get("train")
    if not train or "lr" not in train:
        raise ConfigError(
            "edge_of_stability needs a [train] table with `lr` (the gradient-descent step); "
            "add one or drop this theory column."
        )
    lr = float(train["lr"])
    wd = float(train.get("weight_decay", 0.0))
    if not lr > 0:
        raise ConfigError(f"edge_of_stability needs lr > 0, got {lr}.")
    shrink = (1.0 - lr * wd) ** 2
    rate = -math.log(shrink) if shrink > 0 else math.inf
    return {
        "two_over_lr": 2.0 / lr,
        "stability": 2.0,
        "norm_decay_rate": rate,
        "lr_wd": lr * wd,
    }
