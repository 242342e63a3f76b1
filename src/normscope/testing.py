"""The conformance battery every measure passes, and helpers to check a model is untouched.

scikit-learn's ``check_estimator`` for normscope: :func:`check_measure` runs every check
of :data:`CHECKS` on one registered measure, yours included, and raises
``AssertionError`` naming the check and what failed. The checks:

- ``refuses_invalid_options``: every value each declared constraint refuses
  (:func:`invalid_options`) raises a :class:`~normscope.errors.NormscopeError` that names
  the measure and the option, before anything is computed;
- ``refuses_unknown_options``: an unknown option raises
  :class:`~normscope.errors.UnknownNameError` listing the valid ones, a misspelt one
  suggests the right one;
- ``settings_equal_bound_signature``: ``Measurement.settings`` holds the Subject's
  settings and every option as bound (defaults filled in), except the options the
  measure declares it derives;
- ``leaves_model_untouched``: parameters, buffers, grads and modes bit for bit, with
  batch norm in train and in eval mode;
- ``deterministic``: the same seed gives the same value;
- ``runs_on_every_subject``: a finite value (or a non-finite one with a note), the
  Subject's settings and a cost (seconds, and the products counted for a finite value)
  on each of :func:`battery_subjects`: batch norm in train
  and eval mode, ``batch_size`` set, a model without normalization, float32 and float64,
  mse and cross-entropy.

Each check runs the measure with its registered ``quick`` options on a tiny model.

Example:
    >>> from normscope.testing import check_measure, invalid_options
    >>> check_measure("loss")
    >>> ("rho", 0) in invalid_options("adaptive_sharpness")
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from normscope.errors import NormscopeError, UnknownNameError
from normscope.measurement import Measurement
from normscope.measures import registry
from normscope.subject import Subject


@dataclass(frozen=True)
class ModelState:
    """A bit-exact copy of everything a measurement must not change."""

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    flags: dict[str, tuple[bool, object]]


def model_state(model: nn.Module) -> ModelState:
    """Snapshot parameters, buffers, grads, and per-module training/tracking flags."""
    tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {
        n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()
    }
    flags = {
        n: (m.training, getattr(m, "track_running_stats", None)) for n, m in model.named_modules()
    }
    return ModelState(tensors, grads, flags)


def changes(before: ModelState, model: nn.Module) -> list[str]:
    """What differs between ``before`` and the model now (empty: untouched, bit for bit)."""
    after = model_state(model)
    out = []
    for k, v in before.tensors.items():
        w = after.tensors.get(k)
        if w is None or w.dtype != v.dtype or w.shape != v.shape or not torch.equal(w, v):
            out.append(f"tensor {k}")
    for k, g in before.grads.items():
        h = after.grads.get(k)
        if (g is None) != (h is None) or (g is not None and not torch.equal(g, h)):
            out.append(f"grad {k}")
    out += [f"flags {k}" for k, f in before.flags.items() if after.flags.get(k) != f]
    return out


# ----------------------------------------------------------------------------- subjects
def _model(norm: bool, dtype: torch.dtype) -> nn.Module:
    """Linear-BatchNorm-ReLU-Linear-LayerNorm-Tanh-Linear (or without the norms), 4 -> 3."""
    gen = torch.Generator().manual_seed(0)
    layers = [nn.Linear(4, 6), nn.BatchNorm1d(6) if norm else nn.Identity(), nn.ReLU()]
    layers += [nn.Linear(6, 5), nn.LayerNorm(5) if norm else nn.Identity(), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(5, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5 + (p.ndim == 1))
        if norm:  # trained-looking running statistics, so eval mode differs from train mode
            model[1].running_mean.uniform_(-0.5, 0.5, generator=gen)
            model[1].running_var.uniform_(0.5, 2.0, generator=gen)
    return model


def battery_subjects() -> dict[str, Subject]:
    """The Subjects every measure runs on, by name: 24 samples, 4 inputs, 3 classes."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(24, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=gen)
    f64, f32 = torch.float64, torch.float32
    return {
        "bn_train_float64": Subject(_model(True, f64), (x, y), bn_mode="train"),
        "bn_eval_float64": Subject(_model(True, f64), (x, y), bn_mode="eval"),
        "bn_train_batch_size": Subject(_model(True, f64), (x, y), batch_size=8),
        "no_normalization": Subject(_model(False, f64), (x, y)),
        "float32": Subject(_model(True, f32), (x.float(), y)),
        "mse": Subject(_model(True, f64), (x, y), loss="mse"),
    }


# ----------------------------------------------------------------------------- the checks
def invalid_options(name: str) -> list[tuple[str, Any]]:
    """``(option, value)`` pairs measure ``name`` must refuse, generated from each option's
    declared constraint (wrong types, out-of-range and non-finite numbers, misspelt
    choices)."""
    info = registry.info(name)
    return [(k, v) for k, option in info.options.items() for v in option.allowed.refused()]


def _run(name: str, subject: Subject, **extra: Any) -> Measurement:
    info = registry.info(name)
    return info.fn(subject, **{**info.quick, **extra})


def _subject(bn_mode: str = "train") -> Subject:
    return battery_subjects()[f"bn_{bn_mode}_float64"]


def check_refuses_invalid_options(name: str) -> None:
    subject = _subject()
    for option, value in invalid_options(name):
        try:
            _run(name, subject, **{option: value})
        except NormscopeError as err:
            text = str(err)
            assert option in text and name in text, f"{option}={value!r}: message {text!r}"
        else:
            raise AssertionError(f"{name}: {option}={value!r} was accepted")


def check_refuses_unknown_options(name: str) -> None:
    subject = _subject()
    info = registry.info(name)
    try:
        _run(name, subject, no_such_option=1)
    except UnknownNameError as err:
        assert all(o in str(err) for o in info.options), f"valid options not listed: {err}"
    else:
        raise AssertionError(f"{name}: an unknown option was accepted")
    for option in [o for o in info.options if len(o) > 3][:1]:
        typo = option[:-1]
        try:
            _run(name, subject, **{typo: info.options[option].default})
        except UnknownNameError as err:
            assert f"Did you mean {option!r}" in str(err), str(err)
        else:
            raise AssertionError(f"{name}: the misspelt option {typo!r} was accepted")


def check_settings_equal_bound_signature(name: str) -> None:
    subject = _subject()
    info = registry.info(name)
    m = _run(name, subject)
    for key, value in subject.describe().items():
        assert m.settings.get(key) == value, f"setting {key}: {m.settings.get(key)!r}"
    bound = {k: o.default for k, o in info.options.items()} | info.quick
    if info.warm_start:
        assert "init_vectors" not in m.settings and m.settings["warm_start"] is False
        del bound["init_vectors"]
    for key, value in bound.items():
        assert key in m.settings, f"option {key} missing from settings"
        if key not in info.derives:
            assert m.settings[key] == value, f"setting {key}: {m.settings[key]!r} != {value!r}"


def check_leaves_model_untouched(name: str) -> None:
    for bn_mode in ("train", "eval"):
        subject = _subject(bn_mode)
        subject.model.train()
        first = next(subject.model.parameters())
        first.grad = torch.ones_like(first)
        before = model_state(subject.model)
        _run(name, subject)
        assert changes(before, subject.model) == [], f"bn_mode={bn_mode}"


def check_deterministic(name: str) -> None:
    a, b = _run(name, _subject()).value, _run(name, _subject()).value
    assert a == b or (math.isnan(a) and math.isnan(b)), f"{a} != {b}"


def check_runs_on_every_subject(name: str) -> None:
    for label, subject in battery_subjects().items():
        m = _run(name, subject)
        assert m.name == name and isinstance(m.value, float), label
        assert math.isfinite(m.value) or m.notes, f"{label}: non-finite value without a note"
        for key in ("bn_mode", "dtype", "loss", "batch_size"):
            assert m.settings[key] == subject.describe()[key], f"{label}: setting {key}"
        assert m.cost.get("seconds", -1) >= 0, f"{label}: cost {m.cost}"
        assert len(m.cost) >= 2 or not math.isfinite(m.value), f"{label}: no product counted"


CHECKS: dict[str, Callable[[str], None]] = {
    "refuses_invalid_options": check_refuses_invalid_options,
    "refuses_unknown_options": check_refuses_unknown_options,
    "settings_equal_bound_signature": check_settings_equal_bound_signature,
    "leaves_model_untouched": check_leaves_model_untouched,
    "deterministic": check_deterministic,
    "runs_on_every_subject": check_runs_on_every_subject,
}
"""Every check of the battery, by name; each takes a registered measure's name."""


def check_measure(name: str) -> None:
    """Run every check of :data:`CHECKS` on measure ``name``; ``AssertionError`` names the
    first check that fails."""
    for check, run in CHECKS.items():
        try:
            run(name)
        except AssertionError as err:
            raise AssertionError(f"measure {name!r} fails check {check}: {err}") from err
