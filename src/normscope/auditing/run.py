"""``audit``: what a model's normalization layers do, measured side by side."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from normscope import measures as registry
from normscope import nets
from normscope.auditing.budget import (
    ALWAYS_KEPT,
    MIN_SAMPLES,
    Plan,
    accepts,
    choose_plan,
    describe,
    options_for,
    plan_for,
    predict,
)
from normscope.auditing.data import AuditData, Sample
from normscope.auditing.result import AuditResult, RunRecord
from normscope.auditing.variants import (
    NO_NORM_NOTE,
    VARIANTS,
    Run,
    Variant,
    build_variants,
    check_bn_modes,
    check_variants,
    copy_model,
    runs_of,
)
from normscope.errors import ConfigError, ModelError
from normscope.subject import BN_MODES, Subject

DEFAULT_MEASURES: tuple[str, ...] = (
    "loss",
    "sharpness",
    "hessian_trace",
    "spherical_sharpness",
    "fisher_spectrum",
    "input_lipschitz",
    "param_lipschitz",
    "gradient_norms",
    "isometry_gap",
)
"""Measures an audit takes when none are named; those not registered are skipped."""


def _measure_names(names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(measures to take, notes); explicit names must exist, default ones may be missing."""
    if names is None:
        present = set(registry.names())
        missing = [n for n in DEFAULT_MEASURES if n not in present]
        notes = [f"default measures not available here, skipped: {', '.join(missing)}"]
        return [n for n in DEFAULT_MEASURES if n in present], notes if missing else []
    if isinstance(names, str):
        names = [names]
    for name in names:
        registry.info(name)
    if not names:
        raise ConfigError("measures is empty: name at least one (see `normscope list measures`).")
    return list(dict.fromkeys(names)), []


def _model_dtype(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    floats = [p for p in model.parameters() if p.is_floating_point()]
    if not floats:
        raise ModelError("the model has no floating-point parameters to measure.")
    return floats[0].dtype, floats[0].device


def _take(name: str, subject: Subject, options: dict[str, Any], seed: int):
    kwargs = dict(options)
    if accepts(name, "seed"):
        kwargs["seed"] = seed
    return registry.get(name)(subject, **kwargs)


def _subject(run: Run, sample: Sample, loss: str) -> Subject:
    return Subject(
        run.variant.model,
        sample.data,
        loss=loss,
        bn_mode=run.subject_mode,
        max_batches=sample.max_batches,
    )


def _measure_runs(
    runs: list[Run],
    sample: Sample,
    loss: str,
    plan: Plan,
    order: Sequence[str],
    seed: int,
    deadline: float | None,
    progress: Callable[[str], None] | None,
) -> list[RunRecord]:
    """Every measure of ``plan`` on every run, measure by measure in ``order``.

    Measure by measure, so that when the budget runs out a measure is missing for all
    variants (or one), not every measure for the last variants.
    """
    records = [RunRecord(r.label, r.variant.name, r.bn_mode) for r in runs]
    subjects = [_subject(r, sample, loss) for r in runs]
    total, done = len(order) * len(runs), 0
    for name in order:
        for run, record, subject in zip(runs, records, subjects, strict=True):
            done += 1
            # the loss costs one forward pass: taken even late, so that no run is empty
            late = deadline is not None and time.perf_counter() > deadline
            if late and name != ALWAYS_KEPT:
                record.skipped[name] = "the time budget ran out before this measure"
                continue
            if progress is not None:
                progress(f"{name} of {run.label} ({done}/{total})")
            begin = time.perf_counter()
            try:
                record.measurements[name] = _take(name, subject, plan.options[name], seed)
            # A user's model may hold an op a measure cannot differentiate (no forward-mode
            # AD, no double backward): that measure fails for that variant, the rest go on.
            except Exception as err:
                record.failed[name] = f"{type(err).__name__}: {err}"
            record.seconds += time.perf_counter() - begin
    return records


CHEAP_FAMILIES = ("loss", "gradients", "signal")
"""Families of measures that take a forward and a backward pass: timed first."""


def _cheap_first(names: Sequence[str]) -> list[str]:
    return sorted(names, key=lambda n: registry.info(n).family not in CHEAP_FAMILIES)


def _calibrate(
    run: Run,
    sample: Sample,
    loss: str,
    names: Sequence[str],
    tier: str,
    seed: int,
    stop_at: float,
) -> dict[str, float]:
    """Seconds of each measure on ``sample`` for ``run``; inf for those not reached by
    ``stop_at`` (a ``time.perf_counter`` value)."""
    subject = _subject(run, sample, loss)
    costs = {}
    for name in _cheap_first(names):
        if time.perf_counter() > stop_at:
            costs[name] = math.inf
            continue
        begin = time.perf_counter()
        # a failing measure fails again in the run, which reports it; here only time counts
        with contextlib.suppress(Exception):
            _take(name, subject, options_for(name, tier), seed)
        costs[name] = time.perf_counter() - begin
    return costs


def _budget_plan(
    runs: list[Run],
    data: AuditData,
    loss: str,
    names: list[str],
    budget: float,
    seed: int,
    start: float,
) -> tuple[Plan, list[str], list[str]]:
    """The plan, the order to take its measures in (cheapest first), and notes."""
    sample = data.sample(min(len(data), MIN_SAMPLES), seed)
    m = sample.num_samples
    cheap = _calibrate(runs[0], sample, loss, names, "cheap", seed, start + budget / 3)
    default = None
    left = budget - (time.perf_counter() - start)
    if predict(cheap, m, len(data), len(runs), 1.0) < left:
        default = _calibrate(runs[0], sample, loss, names, "default", seed, start + budget / 2)
    spent = time.perf_counter() - start
    plan = choose_plan(
        names,
        default_costs=default,
        cheap_costs=cheap,
        m=m,
        n=len(data),
        runs=len(runs),
        seconds=budget - spent,
        exponent=1.0,
    )
    untimed = [k for k, v in cheap.items() if math.isinf(v)]
    notes = [f"calibration on {m} samples of {runs[0].label} took {spent:.3g} s"]
    if untimed:
        notes.append(f"not timed within a third of the budget: {', '.join(untimed)}")
    timed = default if plan.tier == "default" else cheap
    return plan, sorted(plan.measures, key=lambda k: timed[k]), notes


def _model_notes(
    model: nn.Module, variants: list[Variant], runs: list[Run], requested: Sequence[str]
) -> list[str]:
    kinds = {layer.kind for layer in nets.find_norm_layers(model)}
    notes = []
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    half = sorted(str(d).removeprefix("torch.") for d in dtypes & {torch.float16, torch.bfloat16})
    if half:
        notes.append(
            f"the model is in {', '.join(half)}: every product carries that dtype's rounding "
            "(about 8e-3 relative for bfloat16, 1e-3 for float16), and loss differences "
            "(adaptive sharpness, landscapes) can be pure rounding; audit a float32 copy for "
            "accurate values"
        )
    if not kinds:
        notes.append(NO_NORM_NOTE)
    elif "batch" not in kinds and any(v.startswith("bn_to_") for v in requested):
        notes.append("no batch norm layer found: the bn_to_* variants were skipped")
    fresh = registry.fresh_running_stats(model)
    if any(r.bn_mode == "eval" for r in runs) and fresh:
        notes.append(
            "batch norm running statistics are still at their initial values (mean 0, "
            "variance 1) in layers " + ", ".join(fresh) + ": in eval "
            "mode they normalize nothing until the model is trained"
        )
    skipped = [v.name for v in variants if v.model is None]
    if skipped:
        notes.append(f"variants skipped: {', '.join(skipped)} (reasons in skipped)")
    return notes


def audit(
    model: nn.Module,
    data: Any,
    *,
    loss: str | Callable | None = None,
    measures: Sequence[str] | None = None,
    variants: Sequence[str] = VARIANTS,
    bn_modes: Sequence[str] = BN_MODES,
    budget_seconds: float | None = None,
    seed: int = 0,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditResult:
    """Measure what the normalization layers of ``model`` do, variant by variant.

    Variants (deep copies built by norm surgery; ``model`` itself is never modified):
    ``as_given``, ``no_norm`` (every norm layer removed), ``bn_to_layer`` / ``bn_to_rms``
    / ``bn_to_group`` (batch norm swapped, where shapes allow; otherwise skipped with the
    surgery's reason). Variants holding batch norm are measured in each of ``bn_modes``
    (``train``: batch statistics; ``eval``: running statistics). Every run takes the same
    measures (default :data:`DEFAULT_MEASURES`: loss, sharpness lambda_max(H), Hessian
    trace, spherical sharpness (lyu2022), Fisher lambda_max (karakida2019), input and
    parameter Lipschitz bounds (hiddenpower2025), gradient norms and isometry gap per
    layer (meterez2024)) on the same data with the same seed.

    Args:
        model: any ``nn.Module`` taking the data's inputs.
        data: anything a :class:`~normscope.Subject` takes: a Dataset, ``(inputs,
            targets)`` (inputs a tensor, tuple or mapping of tensors), a DataLoader or a
            list of batches.
        loss: ``"cross_entropy"``, ``"mse"`` or a callable ``loss_fn(output, target)``
            (default: cross-entropy for integer labels, mse for real-valued targets).
        measures: registry names; an unknown name raises UnknownNameError. Default names
            that are not registered in this installation are skipped with a note.
        variants: which variants, from :data:`~normscope.auditing.variants.VARIANTS`.
        bn_modes: batch-norm modes for variants that hold batch norm.
        budget_seconds: cap on the whole audit; cheaper settings are chosen to fit it
            (see :mod:`normscope.auditing.budget`) and the choice is written to the notes.
        seed: seeds every measure and any subsampling.
        name: name of the audit in the store (default: the model's class name).
        progress: called with a short message before each measurement.

    Returns:
        An :class:`AuditResult` (tidy tables ``table``, ``layers``, ``details``).
    """
    start = time.perf_counter()
    if budget_seconds is not None and not budget_seconds > 0:
        raise ConfigError(f"budget_seconds must be positive, got {budget_seconds!r}.")
    dataset = AuditData(data)
    loss = loss or dataset.default_loss
    names, notes = _measure_names(measures)
    chosen, modes = check_variants(variants), check_bn_modes(bn_modes)
    Subject(copy_model(model), data, loss=loss)  # model and data fit, or a clear error
    dtype, device = _model_dtype(model)
    example = dataset.example(min(len(dataset), 8), dtype, device)
    built = build_variants(model, chosen, example)
    runs = runs_of(built, modes)
    notes += _model_notes(model, built, runs, chosen)
    if budget_seconds is not None and runs:
        if progress is not None:
            progress("timing the measures to fit the budget")
        plan, order, calibration = _budget_plan(
            runs, dataset, loss, names, budget_seconds, seed, start
        )
        notes += calibration
    else:
        plan = plan_for("default", len(dataset), names)
        order = list(plan.measures)
    notes += describe(plan, len(dataset), len(runs), budget_seconds)
    used = dataset.sample(plan.n, seed)
    deadline = None if budget_seconds is None else start + budget_seconds
    records = _measure_runs(runs, used, loss, plan, order, seed, deadline, progress)
    if any(r.skipped for r in records):
        notes.append("the time budget ran out: some measures were not taken (see table)")
    settings = _settings(dataset, used, plan, loss, seed, budget_seconds, chosen, modes)
    return AuditResult(
        name=name or type(model).__name__,
        runs=records,
        skipped={v.name: v.reason for v in built if v.model is None},
        notes=notes,
        settings=settings | {"dtype": str(dtype).removeprefix("torch.")},
        norm_layers=[(layer.name, layer.kind) for layer in nets.find_norm_layers(model)],
        seconds=time.perf_counter() - start,
    )


def _settings(
    dataset: AuditData,
    used: Sample,
    plan: Plan,
    loss: str | Callable,
    seed: int,
    budget: float | None,
    variants: Sequence[str],
    modes: Sequence[str],
) -> dict[str, Any]:
    return {
        "data": dataset.name,
        "n": used.num_samples,
        "n_given": len(dataset),
        "loss": loss if isinstance(loss, str) else getattr(loss, "__qualname__", repr(loss)),
        "seed": seed,
        "measures": list(plan.measures),
        "dropped": list(plan.dropped),
        "tier": plan.tier,
        "options": plan.options,
        "budget_seconds": budget,
        "variants": list(variants),
        "bn_modes": list(modes),
    }
