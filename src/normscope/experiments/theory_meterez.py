"""Theory columns for the meterez2024 reproduction: the isometry gap of the run's inputs,
the quantity its bounds are stated in.

Registered as ``meterez_input_gap``; columns ``phi0`` and ``log_width``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from normscope.experiments import theory_columns
from normscope.theory.meterez import isometry_gap


def _inputs(config: dict[str, Any]) -> np.ndarray:
    from normscope import data

    spec = dict(config["subject"]["data"])
    name, split, n, seed = spec.pop("name"), spec.pop("split"), spec.pop("n"), spec.pop("seed")
    dataset = data.load(name, split=split, n=n, seed=seed, **spec)
    return dataset.x.reshape(len(dataset.x), -1).double().numpy()


@theory_columns.register("meterez_input_gap")
def meterez_input_gap(config: dict[str, Any]) -> dict[str, float]:
    """φ(X_0) = log(tr G / n) − (1/n) log det G of the run's input batch, G = X_0 X_0ᵀ.

    meterez2024 bound the isometry gap at depth ℓ by E φ(X_ℓ) ≤ φ(X_0) e^{−ℓ/k} (so never
    above ``phi0``, whatever the unspecified constant in k) and E log ‖∇_{W_ℓ} L‖ by a
    function of the width d and φ(X_0) alone; ``log_width`` = log d is given beside it for
    reading that bound (d = the first hidden width).
    """
    x = _inputs(config)
    width = config["subject"]["net"].get("width", 64)
    d = width[0] if isinstance(width, list) else width
    return {"phi0": isometry_gap(x @ x.T), "log_width": math.log(d)}
