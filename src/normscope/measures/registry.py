"""The registry of named measures: ``get(name)``, ``names()``, ``info(name)``.

A measure is a plain function ``f(subject, **options) -> Measurement`` with keyword-only
options that all have defaults. It registers itself with :func:`register`, declaring
what each option accepts (:mod:`normscope.measures.constraints`) and what it can do
(warm start, learning rate, labels). A new measure is a new file in this package (every
module here is imported when the package is).

What :func:`register` returns is the one callable of the measure: the module attribute,
``normscope.measures.<name>`` and ``get(name)`` are the same function, which

1. refuses anything but a :class:`~normscope.subject.Subject`, and labelled data where
   the measure needs labels;
2. maps renamed options to their new name (with a note) and refuses unknown options
   (:class:`~normscope.errors.UnknownNameError`, closest valid names first) and values
   the declared constraints do not allow (:class:`~normscope.errors.ConfigError` or, for
   a name chosen from a list, ``UnknownNameError``), each naming the measure, the option,
   the value and what is allowed;
3. runs the measure, reporting a non-finite computation as ``inf`` with a note;
4. records the settings: the Subject's, every option of the bound signature (a warm
   start as ``warm_start``), then whatever the measure derived (a path, a resolved
   default);
5. notes batch-norm layers that do not normalize on this data (epsilon regime, or eval
   mode with running statistics never updated).

Example:
    >>> from normscope import measures
    >>> measures.get("sharpness") is measures.sharpness
    True
    >>> measures.info("sharpness").warm_start, measures.info("sharpness").takes_lr
    (True, False)
    >>> str(measures.info("adaptive_sharpness").options["rho"].allowed)
    'a finite number > 0'
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from normscope import progress
from normscope.errors import (
    ConfigError,
    DataError,
    NonFiniteError,
    UnknownNameError,
    closest_first,
    did_you_mean,
    unknown_name,
)
from normscope.measurement import Measurement
from normscope.measures.constraints import Choice, Constraint, Optional
from normscope.subject import Subject, is_batch_norm, preserved_buffers

MeasureFn = Callable[..., Measurement]

WARM_START_OPTIONS = ("init_vectors", "return_vectors")
"""The options of a measure that can warm-start: its previous eigenvectors go in as
``init_vectors``; ``return_vectors=True`` puts them in ``details["eigenvectors"]``."""


@dataclass(frozen=True)
class Option:
    """One keyword option of a measure: its default and what it accepts."""

    default: Any
    allowed: Constraint


@dataclass(frozen=True)
class MeasureInfo:
    """What the registry knows of a measure.

    ``fn`` is the checked callable (the same object as ``normscope.measures.<name>``).
    ``options`` maps each option to its default and constraint. ``quick`` holds options
    that make the measure cheap on a small model (the conformance battery and
    ``--budget``-limited runs use them). ``renamed`` maps old option names still
    accepted (with a note) to the new ones; ``derives`` names options whose recorded
    setting is resolved by the measure (a default of ``None`` made concrete, a cap).
    Capabilities: ``warm_start`` (takes ``init_vectors``, returns ``eigenvectors``),
    ``takes_lr`` (the Tracker passes the learning rate), ``needs_labels``, ``sharded``
    (runs on a Subject that spans several processes, :mod:`normscope.distributed`).
    """

    name: str
    fn: MeasureFn
    family: str
    paper: str | None = None
    summary: str = ""
    options: Mapping[str, Option] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    needs_labels: bool = True
    warm_start: bool = False
    takes_lr: bool = False
    renamed: Mapping[str, str] = field(default_factory=dict)
    derives: tuple[str, ...] = ()
    sharded: bool = False


_REGISTRY: dict[str, MeasureInfo] = {}


def register(
    name: str,
    *,
    family: str,
    options: Mapping[str, Constraint] | None = None,
    paper: str | None = None,
    needs_labels: bool = True,
    warm_start: bool = False,
    takes_lr: bool = False,
    quick: dict[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
    derives: tuple[str, ...] = (),
    sharded: bool = False,
) -> Callable[[MeasureFn], MeasureFn]:
    """Decorator that adds a measure to the registry under ``name`` and returns its
    checked callable.

    ``options`` declares a constraint for every keyword option of the function, no more
    and no less (``None``: the function takes none); the declaration is checked against
    the signature when the module is imported (as are the capabilities), so it cannot
    drift from the code. ``sharded=True`` declares that every data-set sum the measure
    takes goes through the Subject's operators or loss, which sum over the ranks of a
    process group; other measures refuse a Subject that spans several processes.
    """

    def add(fn: MeasureFn) -> MeasureFn:
        if name in _REGISTRY and _REGISTRY[name].fn.__wrapped__ is not fn:
            raise ValueError(f"measure {name!r} is registered twice")
        declared = _declared_options(name, fn, options or {})
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        checked = _checked(name, fn)
        info = MeasureInfo(
            name,
            checked,
            family,
            paper,
            summary,
            MappingProxyType(declared),
            dict(quick or {}),
            needs_labels,
            warm_start,
            takes_lr,
            MappingProxyType(dict(renamed or {})),
            tuple(derives),
            sharded,
        )
        _check_declaration(info)
        _REGISTRY[name] = info
        return checked

    return add


def _declared_options(
    name: str, fn: MeasureFn, constraints: Mapping[str, Constraint]
) -> dict[str, Option]:
    params = list(inspect.signature(fn).parameters.values())
    keyword = {p.name: p for p in params[1:]}
    bad = [p.name for p in params[1:] if p.kind is not p.KEYWORD_ONLY or p.default is p.empty]
    if bad:
        raise TypeError(f"measure {name!r}: options {bad} must be keyword-only with defaults")
    if set(keyword) != set(constraints):
        raise TypeError(
            f"measure {name!r}: declared options {sorted(constraints)} differ from the "
            f"signature's {sorted(keyword)}"
        )
    return {k: Option(p.default, constraints[k]) for k, p in keyword.items()}


def _check_declaration(info: MeasureInfo) -> None:
    """Capabilities, renames, derived options and defaults agree with the options."""
    has = set(info.options)
    problems = []
    if info.warm_start != (set(WARM_START_OPTIONS) <= has):
        problems.append(f"warm_start={info.warm_start} but options {sorted(has)}")
    if info.warm_start and not isinstance(info.options["init_vectors"].allowed, Optional):
        problems.append("init_vectors must be Optional(Vectors())")
    if info.takes_lr != ("lr" in has):
        problems.append(f"takes_lr={info.takes_lr} but options {sorted(has)}")
    problems += [f"renamed {o!r} -> {n!r}" for o, n in info.renamed.items() if n not in has]
    problems += [f"derives unknown option {d!r}" for d in info.derives if d not in has]
    for option, value in [(k, o.default) for k, o in info.options.items()] + list(
        info.quick.items()
    ):
        if option not in has or not info.options[option].allowed.allows(value):
            problems.append(f"default or quick value {option}={value!r} is not allowed")
    if problems:
        raise TypeError(f"measure {info.name!r}: {'; '.join(problems)}")


# ----------------------------------------------------------------------------- checks
def check_options(name: str, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``options`` checked against measure ``name``'s declaration.

    Returns the options with renamed ones under their new name, and a note for each
    rename. Raises :class:`~normscope.errors.UnknownNameError` for an unknown measure or
    option (closest valid names first) or for a name outside an option's choices, and
    :class:`~normscope.errors.ConfigError` for any other value the option does not allow.
    """
    measure = info(name)
    out, notes = {}, []
    for key, value in options.items():
        new = measure.renamed.get(key)
        if new is not None:
            if new in options:
                raise ConfigError(
                    f"measure {name!r}: give {new!r} only; {key!r} is its old name and both "
                    "were given."
                )
            notes.append(
                f"option {key!r} is now called {new!r}; the old name is accepted for one "
                "more release"
            )
            key = new
        out[key] = value
    for key, value in out.items():
        if key not in measure.options:
            raise _unknown_option(measure, key)
        allowed = measure.options[key].allowed
        if not allowed.allows(value):
            raise _not_allowed(name, key, value, allowed)
    return out, notes


def _unknown_option(measure: MeasureInfo, key: str) -> UnknownNameError:
    valid = list(measure.options)
    listed = ", ".join(closest_first(key, valid)) or "none"
    return UnknownNameError(
        f"measure {measure.name!r} has no option {key!r}.{did_you_mean(key, valid)} "
        f"Valid options: {listed}."
    )


def _not_allowed(name: str, key: str, value: Any, allowed: Constraint) -> Exception:
    inner = allowed.inner if isinstance(allowed, Optional) else allowed
    shown = _show(value)
    if isinstance(inner, Choice) and isinstance(value, str):
        return UnknownNameError(
            f"measure {name!r}: option {key}={shown} is not one of its values."
            f"{did_you_mean(value, inner.values)} Valid values of {key}: "
            f"{', '.join(closest_first(value, inner.values))}."
        )
    return ConfigError(
        f"measure {name!r}: option {key}={shown} is not allowed; {key} must be {allowed}."
    )


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value) if not hasattr(value, "shape") else f"{type(value).__name__} {value.shape}"
    return text if len(text) <= 60 else text[:57] + "..."


def _check_subject(measure: MeasureInfo, subject: Any) -> None:
    if not isinstance(subject, Subject):
        raise ConfigError(
            f"measure {measure.name!r} takes a normscope.Subject, got "
            f"{type(subject).__name__}: wrap model and data as Subject(model, (x, y), "
            "loss=...)."
        )
    if subject.group is not None and not measure.sharded:
        sharded = ", ".join(n for n in names() if _REGISTRY[n].sharded)
        raise ConfigError(
            f"measure {measure.name!r} is not sharded across processes: on a Subject that "
            f"spans {subject.group.size} processes it would see only this rank's batches. "
            "Take it on a Subject without process_group (one process, all the data), or "
            f"take a sharded measure ({sharded})."
        )
    if measure.needs_labels and not subject.labelled:
        free = ", ".join(n for n in names() if not _REGISTRY[n].needs_labels)
        raise DataError(
            f"measure {measure.name!r} needs labels or targets, and the Subject's data has "
            f"none: give targets, or take a measure that needs none ({free})."
        )


# ----------------------------------------------------------------------------- the call
def _checked(name: str, fn: MeasureFn) -> MeasureFn:
    """``fn`` behind the registry's checks, settings and notes (module docstring)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def measure(subject, /, **options) -> Measurement:
        about = info(name)
        _check_subject(about, subject)
        options, notes = check_options(name, options)
        bound = signature.bind(subject, **options)
        bound.apply_defaults()
        start = time.perf_counter()
        try:
            with progress.task(name), preserved_buffers(subject.model):
                m = fn(subject, **options)
        except NonFiniteError as err:
            cost = {"seconds": time.perf_counter() - start}
            m = Measurement(name, math.inf, {}, cost, {}, [f"reported as inf: {err}"])
        recorded = dict(bound.arguments)
        del recorded[next(iter(signature.parameters))]
        if about.warm_start:
            recorded["warm_start"] = recorded.pop("init_vectors") is not None
        m.settings = subject.describe() | recorded | m.settings
        m.notes = notes + m.notes + batch_norm_notes(subject) + precision_notes(subject)
        return m

    return measure


def batch_norm_notes(subject: Subject) -> list[str]:
    """Notes on batch-norm layers that do not normalize the data they are given.

    In train mode: layers in the epsilon regime (a channel's batch variance below
    ``10 eps``; their gain is about ``1/sqrt(eps)``). In eval mode: layers whose running
    statistics were never updated (``num_batches_tracked == 0``, mean 0 and variance 1),
    which then pass their input through unnormalized.
    """
    notes = []
    stalled = subject.batch_norm_in_epsilon_regime()
    if stalled:
        notes.append(
            f"batch norm in the epsilon regime in {stalled}: a channel's batch variance "
            "is below 10 x eps, so these layers do not normalize and their gain is about "
            "1/sqrt(eps)"
        )
    if subject.bn_mode == "eval":
        fresh = fresh_running_stats(subject.model)
        if fresh:
            notes.append(
                "bn_mode='eval' with running statistics never updated (mean 0, variance 1) "
                f"in layers {', '.join(fresh)}: these layers do not normalize; train the "
                "model (or run forward passes in train mode) first, or measure with "
                "bn_mode='train'"
            )
    return notes


def precision_notes(subject: Subject) -> list[str]:
    """A note on half-precision models: their products carry the dtype's rounding."""
    if subject.dtype == subject.work_dtype:
        return []
    eps = torch.finfo(subject.dtype).eps
    return [
        f"products in {str(subject.dtype).removeprefix('torch.')} (rounding about {eps:.0e} "
        "relative): measure a float32 copy of the model for accurate values"
    ]


def fresh_running_stats(model) -> list[str]:
    """Batch-norm layers whose running statistics are still at their initial values.

    In eval mode such a layer computes ``(x - 0) / sqrt(1 + eps)``: it normalizes nothing,
    so eval-mode numbers of an untrained model say little about a trained one.
    """
    fresh = []
    for layer_name, module in model.named_modules():
        mean = getattr(module, "running_mean", None)
        var = getattr(module, "running_var", None)
        if not is_batch_norm(module) or mean is None or var is None:
            continue
        if bool((mean == 0).all()) and bool((var == 1).all()):
            fresh.append(layer_name)
    return fresh


# ----------------------------------------------------------------------------- lookups
def get(name: str) -> MeasureFn:
    """The measure function registered as ``name``."""
    return info(name).fn


def info(name: str) -> MeasureInfo:
    """What the registry knows of measure ``name`` (:class:`MeasureInfo`)."""
    if name not in _REGISTRY:
        raise unknown_name("measure", name, _REGISTRY)
    return _REGISTRY[name]


def names() -> list[str]:
    """All registered measure names, sorted."""
    return sorted(_REGISTRY)
