"""Settings of an audit: which measures, with which options, on how many samples.

Without a budget every measure runs with the audit's default options on all samples.
With ``budget_seconds`` the audit first times the measures on a small subsample of the
given model (calibration), extrapolates to the full run, and takes the first plan that
fits the time left, in this order:

1. default options on all samples;
2. cheap options (each measure's registered ``quick`` options, and at most
   ``CHEAP_MAX_ITER`` Lanczos steps where a measure takes ``max_iter``) on all samples;
3. cheap options on half, a quarter... of the samples, down to ``MIN_SAMPLES``;
4. at ``MIN_SAMPLES``: the most expensive measures dropped one by one (``loss``, and the
   last measure left, stay).

Calibration itself is capped at a third of the budget: a measure not timed by then counts
as too expensive. Once the budget is spent no further measure starts.

Every variant gets the same plan, so the numbers stay comparable; the choice is written
to the notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from normscope import measures

AUDIT_OPTIONS: dict[str, dict[str, Any]] = {
    # With fewer features than samples the Gram matrix of a layer is singular and the gap
    # is +inf for every variant; a ridge of 1e-3 tr(G)/n keeps layers comparable.
    "isometry_gap": {"eps": 1e-3},
}
"""Options the audit passes by default (on top of each measure's own defaults)."""

CHEAP_MAX_ITER = 20
"""Lanczos steps allowed in cheap plans (measures default to 100 or more)."""

MIN_SAMPLES = 16
"""Fewest samples a budget plan subsamples to (or all, when there are fewer)."""

ALWAYS_KEPT = "loss"


@dataclass(frozen=True)
class Plan:
    """What every run of an audit measures: the tier, samples, measures and options."""

    tier: str
    n: int
    measures: tuple[str, ...]
    options: dict[str, dict[str, Any]]
    dropped: tuple[str, ...] = ()
    predicted_seconds: float | None = None
    notes: tuple[str, ...] = field(default=())


def accepts(name: str, option: str) -> bool:
    """Whether measure ``name`` takes keyword ``option`` (as declared in the registry)."""
    return option in measures.info(name).options


def options_for(name: str, tier: str) -> dict[str, Any]:
    """Options of measure ``name`` in tier ``"default"`` or ``"cheap"`` (seed not included)."""
    options = dict(AUDIT_OPTIONS.get(name, {}))
    if tier == "cheap":
        options |= measures.info(name).quick
        if accepts(name, "max_iter"):
            options["max_iter"] = CHEAP_MAX_ITER
    return options


def plan_for(tier: str, n: int, names: Sequence[str], **extra: Any) -> Plan:
    """The plan that runs ``names`` in ``tier`` on ``n`` samples."""
    return Plan(tier, n, tuple(names), {m: options_for(m, tier) for m in names}, **extra)


def predict(costs: Mapping[str, float], m: int, n: int, runs: int, exponent: float) -> float:
    """Seconds for ``runs`` runs on ``n`` samples, from seconds per measure on ``m`` samples.

    Costs are taken to grow as ``(n / m) ** exponent``. The audit uses ``exponent = 1``:
    every product (vjp, jvp, hvp) costs one pass over the data, and on small models a
    fixed overhead per call dominates anyway; dense Gram matrices grow faster, which the
    audit's deadline (no measure starts once the budget is spent) catches.
    """
    return runs * sum(costs.values()) * (n / m) ** exponent


def _halvings(n: int) -> list[int]:
    floor = min(n, MIN_SAMPLES)
    out = [n]
    while out[-1] // 2 >= floor:
        out.append(out[-1] // 2)
    if out[-1] > floor:
        out.append(floor)
    return out


def choose_plan(
    names: Sequence[str],
    *,
    default_costs: Mapping[str, float] | None,
    cheap_costs: Mapping[str, float],
    m: int,
    n: int,
    runs: int,
    seconds: float,
    exponent: float,
) -> Plan:
    """The first plan (module docstring) predicted to take at most ``seconds``.

    ``default_costs`` / ``cheap_costs``: seconds of each measure on ``m`` samples in each
    tier (``default_costs`` None when not calibrated, because the cheap tier alone
    already overran).
    """
    if default_costs is not None:
        need = predict(default_costs, m, n, runs, exponent)
        if need <= seconds:
            return plan_for("default", n, names, predicted_seconds=need)
    for size in _halvings(n):
        need = predict(cheap_costs, m, size, runs, exponent)
        if need <= seconds:
            return plan_for("cheap", size, names, predicted_seconds=need)
    size = min(n, MIN_SAMPLES)
    kept = list(names)
    dropped: list[str] = []
    by_cost = sorted((c for c in kept if c != ALWAYS_KEPT), key=lambda c: -cheap_costs[c])
    for name in by_cost:
        costs = {k: cheap_costs[k] for k in kept}
        if len(kept) == 1 or predict(costs, m, size, runs, exponent) <= seconds:
            break
        kept.remove(name)
        dropped.append(name)
    need = predict({k: cheap_costs[k] for k in kept}, m, size, runs, exponent)
    notes = (
        ()
        if need <= seconds
        else (
            f"even the cheapest plan ({', '.join(kept)} on {size} samples) is predicted to take "
            f"{need:.3g} s, more than the {max(seconds, 0.0):.3g} s left",
        )
    )
    return plan_for(
        "cheap", size, kept, dropped=tuple(dropped), predicted_seconds=need, notes=notes
    )


def describe(plan: Plan, total: int, runs: int, budget: float | None) -> list[str]:
    """Notes that say what a plan chose and why."""
    if budget is None:
        return [f"default options on all {total} samples (no budget given)", _options(plan)]
    options = (
        "default options"
        if plan.tier == "default"
        else (f"cheap options (registered quick options, at most {CHEAP_MAX_ITER} Lanczos steps)")
    )
    samples = f"all {total}" if plan.n == total else f"{plan.n} of {total}"
    out = [
        f"budget {budget:.3g} s: chose {options} on {samples} samples, predicted "
        f"{plan.predicted_seconds:.3g} s for {runs} runs"
    ]
    if plan.dropped:
        out.append(f"dropped to fit the budget: {', '.join(plan.dropped)}")
    return [*out, _options(plan), *plan.notes]


def _options(plan: Plan) -> str:
    chosen = "; ".join(
        f"{m}: " + (", ".join(f"{k}={v}" for k, v in sorted(o.items())) or "defaults")
        for m, o in plan.options.items()
    )
    return f"options: {chosen}"
