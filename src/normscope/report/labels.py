"""Words and units for the columns figures draw.

Figures plot columns of the wide results frame: config fields (``subject.net.depth``),
measure names and their details (``fisher_spectrum.mean``), theory columns
(``theory.lambda_max``) and ``step``. A figure page names them the way a paper's figure
does, "depth L" or "Fisher λ_max", not by their dotted paths. :data:`LABELS` holds the
columns every experiment shares; a spec's ``[labels]`` table adds its own (theory columns,
labelled measures) and overrides these. A column found in neither keeps its own name.

Example:
    >>> column_label("subject.net.depth")
    'depth L (hidden layers)'
    >>> column_label("theory.gain", {"theory.gain": "predicted gain"})
    'predicted gain'
    >>> legend_entry("subject.net.norm", "batch")
    'normalization: batch'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABELS: dict[str, str] = {
    "step": "training step t",
    # the network, data and training
    "subject.net.depth": "depth L (hidden layers)",
    "subject.net.width": "width M",
    "subject.net.norm": "normalization",
    "subject.net.placement": "norm placement",
    "subject.net.activation": "activation",
    "subject.net.init": "weight init",
    "subject.net.weight_scale": "weight scale g",
    "subject.net.gain_exponent": "shaping exponent γ",
    "subject.net.seed": "seed",
    "subject.data.n": "samples T",
    "subject.data.dim": "input dimension",
    "subject.params": "trained parameters",
    "train.lr": "learning rate η",
    "train.weight_decay": "weight decay λ",
    "train.steps": "training steps",
    # measures and their details
    "loss": "train loss",
    "loss.accuracy": "train accuracy",
    "test_loss": "test loss",
    "test_loss.accuracy": "test accuracy",
    "sharpness": "sharpness λ_max(H)",
    "spherical_sharpness": "spherical sharpness λ_max(H_ww)·‖w‖²",
    "spherical_sharpness.stability": "effective lr × spherical sharpness",
    "spherical_sharpness.weight_norm_sq": "‖w‖² of the scale-invariant weights",
    "spherical_sharpness.effective_lr": "effective learning rate η/‖w‖²",
    "fisher_spectrum": "Fisher λ_max",
    "fisher_spectrum.mean": "mean Fisher eigenvalue m = tr F / P",
    "input_lipschitz": "input Lipschitz constant (lower bound)",
    "input_lipschitz.upper_bound": "input Lipschitz upper bound (layer product)",
    "param_lipschitz": "parameter Lipschitz constant ‖∂f/∂θ‖₂",
    "gradient_norms": "log ‖∂L/∂W₁‖",
    "isometry_gap": "isometry gap φ",
}


def column_label(column: str, extra: Mapping[str, str] | None = None) -> str:
    """The words for ``column``: the spec's ``[labels]`` first, then :data:`LABELS`, else
    the column name itself."""
    if extra and column in extra:
        return extra[column]
    return LABELS.get(column, column)


def value_text(value: Any) -> str:
    """A column value as a legend shows it: lists as ``[0, 1]``, floats in short form."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def legend_entry(column: str, value: Any, extra: Mapping[str, str] | None = None) -> str:
    """``"<label>: <value>"`` for one line or panel of a figure split by ``column``."""
    return f"{column_label(column, extra)}: {value_text(value)}"
