"""The measurements compared between two gloo processes and one process.

Shared by the spawned ranks (:mod:`tests.distributed.workers`) and the test process,
which computes the one-process values with the same code.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from normscope import Subject, measures
from normscope.curvature import loss_gradient

from tests.helpers import bn_mlp, classification_data

N, BATCH = 26, 6  # batches of 6, 6, 6, 6, 2: ranks hold 2 and 3 batches of unequal weight
DTYPES = {"float64": torch.float64, "float32": torch.float32}
CASES = [(d, bn) for d in DTYPES for bn in ("train", "eval")]


def data(dtype: str):
    return classification_data(n=N, dtype=DTYPES[dtype])


def without_counted_terms():
    """float64 data whose second shard (rank 1's batches) has only ignored labels."""
    x, y = data("float64")
    y = y.clone()
    y[12:] = -100
    return x, y


def model(dtype: str):
    return bn_mlp(DTYPES[dtype])


def measurements(dtype: str) -> dict[str, tuple[str, dict]]:
    """Label -> (measure, options): every sharded measure, on each of its paths."""
    tol = 1e-10 if dtype == "float64" else 1e-4
    return {
        "sharpness": ("sharpness", {"k": 2, "which": "both", "tol": tol, "per_layer": True}),
        "hessian_trace": ("hessian_trace", {"num_probes": 20}),
        "hessian_trace_hutchinson": ("hessian_trace", {"method": "hutchinson", "num_probes": 8}),
        "hessian_density": ("hessian_density", {"num_probes": 2, "num_steps": 12}),
        "fisher_spectrum": ("fisher_spectrum", {}),
        "fisher_spectrum_empirical": ("fisher_spectrum", {"kind": "empirical"}),
        "fisher_spectrum_chunked": ("fisher_spectrum", {"max_memory_mb": 0.02}),
        "fisher_spectrum_lanczos": (
            "fisher_spectrum",
            {"max_gram_size": 20, "k": 3, "num_probes": 6, "tol": tol},
        ),
        "fisher_trace": ("fisher_trace", {}),
        "fisher_trace_hutchinson": ("fisher_trace", {"num_probes": 6}),
        "sample_gradient_norms": ("sample_gradient_norms", {}),
        "gradient_norms": ("gradient_norms", {}),
        "loss": ("loss", {}),
    }


def numbers(m) -> dict[str, list]:
    """A Measurement's value and every numeric detail, as lists of floats (or of names)."""
    out: dict[str, list] = {"value": [float(m.value)]}
    for key, value in m.details.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float | np.floating | np.integer):
            out[key] = [float(value)]
        elif isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
            out[key] = [float(v) for v in value.ravel()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
    return out


def measure_all(subject: Subject, dtype: str) -> dict[str, dict[str, list]]:
    out = {}
    for label, (name, options) in measurements(dtype).items():
        out[label] = numbers(measures.get(name)(subject, **options))
    out["loss_gradient"] = {"value": loss_gradient(subject).double().tolist()}
    return out


def relative_difference(a: list, b: list, scale: list | None = None) -> float:
    """``max |a - b| / max |scale|`` (``scale`` defaults to ``b``; 0 for equal name lists,
    inf when they differ)."""
    if a and isinstance(a[0], str):
        return 0.0 if a == b else math.inf
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        return math.inf
    reference = np.asarray(b if scale is None else scale, dtype=float)
    scale = max(float(np.abs(reference).max(initial=0.0)), 1e-300)
    both_nan = np.isnan(x) & np.isnan(y)
    return float(np.where(both_nan, 0.0, np.abs(x - y)).max(initial=0.0)) / scale
