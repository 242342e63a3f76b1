"""Check ``[[claim]]`` tables against stored results.

Every check returns a :class:`ClaimResult`: the measured number, the expected range,
PASS or FAIL, the number of points used, the fit quality (R² for fits), a message, and
where the claim comes from (``source``: paper, theory or finding, with its ``basis``).
Problems in the data (too few points, a missing column, values that cannot be logged)
make the claim FAIL with the reason; they never raise.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from normscope.errors import NormscopeError
from normscope.experiments.claims_spec import (
    BoundedClaim,
    ClaimSpec,
    CloseClaim,
    LoglogSlopeClaim,
    MonotoneClaim,
    RatioClaim,
    SlopeClaim,
)
from normscope.experiments.frames import _equal, select


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of one claim."""

    name: str
    type: str
    passed: bool
    measured: float
    expected: str
    n: int
    r2: float | None
    message: str
    source: str | None = None
    basis: str = ""
    contradicts: bool = False

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def source_label(self) -> str:
        """``paper``, ``theory``, ``finding``, ``finding against the paper``, or ``""``
        for a claim that does not say."""
        if self.contradicts:
            return "finding against the paper"
        return self.source or ""


class _Fail(Exception):
    """A claim that cannot be evaluated on the data; carries the reason and point count."""

    def __init__(self, message: str, n: int = 0) -> None:
        super().__init__(message)
        self.n = n


def claim_name(claim: ClaimSpec) -> str:
    if claim.name:
        return claim.name
    x = getattr(claim, "x", None) or getattr(claim, "by", None) or getattr(claim, "theory", None)
    return f"{claim.type}: {claim.y}" + (f" vs {x}" if x else "")


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    if name not in table.columns:
        close = difflib.get_close_matches(name, [str(c) for c in table.columns], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _Fail(f"no column {name!r} in the results{hint}")
    return pd.to_numeric(table[name], errors="coerce").astype(float)


def _points(
    table: pd.DataFrame, x: str, y: str, logx: bool, logy: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    xs, ys = _column(table, x).to_numpy(), _column(table, y).to_numpy()
    keep = np.isfinite(xs) & np.isfinite(ys)
    if logx:
        keep &= xs > 0
    if logy:
        keep &= ys > 0
    dropped = int((~keep).sum())
    note = f"; {dropped} point(s) dropped (non-finite or not positive for a log)" if dropped else ""
    xs, ys = xs[keep], ys[keep]
    return (np.log(xs) if logx else xs), (np.log(ys) if logy else ys), note


def _fit(xs: np.ndarray, ys: np.ndarray, need: int) -> tuple[float, float]:
    """Least-squares slope and R² = 1 - SS_res / SS_tot."""
    if len(xs) < need:
        raise _Fail(f"too few points: {len(xs)} < {need}", len(xs))
    if np.ptp(xs) == 0:
        raise _Fail("all points have the same x; a slope needs at least two x values", len(xs))
    slope, intercept = np.polyfit(xs, ys, 1)
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    ss_res = float(((ys - (slope * xs + intercept)) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(slope), r2


def _within(claim: LoglogSlopeClaim | SlopeClaim, table: pd.DataFrame) -> ClaimResult:
    logx = isinstance(claim, LoglogSlopeClaim)
    logy = logx or claim.logy
    xs, ys, note = _points(table, claim.x, claim.y, logx, logy)
    slope, r2 = _fit(xs, ys, claim.min_points or 3)
    lo, hi = claim.within
    ok = lo <= slope <= hi
    what = "log-log slope" if logx else ("slope of log y" if logy else "slope")
    return ClaimResult(
        claim_name(claim),
        claim.type,
        ok,
        slope,
        f"[{lo:g}, {hi:g}]",
        len(xs),
        r2,
        f"{what} {slope:.4g} {'inside' if ok else 'outside'} [{lo:g}, {hi:g}]{note}",
    )


def _bounds(claim: RatioClaim | BoundedClaim) -> str:
    parts = []
    if claim.above is not None:
        parts.append(f"> {claim.above:g}")
    if claim.below is not None:
        parts.append(f"< {claim.below:g}")
    return " and ".join(parts)


def _ratio(claim: RatioClaim, table: pd.DataFrame) -> ClaimResult:
    ys = _column(table, claim.y)
    if claim.by not in table.columns:
        _column(table, claim.by)
    group = table[claim.by]
    need = claim.min_points or 1
    means = []
    for label in (claim.a, claim.b):
        values = ys[group.map(lambda v, w=label: _equal(v, w))].to_numpy()
        values = values[np.isfinite(values)]
        if len(values) < need:
            raise _Fail(f"too few points with {claim.by} = {label!r}: {len(values)} < {need}")
        means.append(float(values.mean()))
    n = int(group.map(lambda v: _equal(v, claim.a) or _equal(v, claim.b)).sum())
    if means[1] == 0:
        raise _Fail(f"mean of {claim.y} with {claim.by} = {claim.b!r} is 0; no ratio", n)
    ratio = means[0] / means[1]
    ok = (claim.above is None or ratio > claim.above) and (
        claim.below is None or ratio < claim.below
    )
    return ClaimResult(
        claim_name(claim),
        claim.type,
        ok,
        ratio,
        _bounds(claim),
        n,
        None,
        f"mean {claim.y} at {claim.a!r} / at {claim.b!r} = {means[0]:.4g} / {means[1]:.4g} "
        f"= {ratio:.4g}",
    )


def _bounded(claim: BoundedClaim, table: pd.DataFrame) -> ClaimResult:
    ys = _column(table, claim.y).to_numpy()
    ys = ys[~np.isnan(ys)]
    if len(ys) < (claim.min_points or 1):
        raise _Fail(f"too few points: {len(ys)} < {claim.min_points or 1}", len(ys))
    hi, lo = float(ys.max()), float(ys.min())
    ok = (claim.below is None or hi < claim.below) and (claim.above is None or lo > claim.above)
    measured = hi if claim.below is not None else lo
    return ClaimResult(
        claim_name(claim),
        claim.type,
        ok,
        measured,
        _bounds(claim),
        len(ys),
        None,
        f"{claim.y} ranges over [{lo:.4g}, {hi:.4g}]",
    )


def _monotone(claim: MonotoneClaim, table: pd.DataFrame) -> ClaimResult:
    if claim.deviation_from is not None:
        deviation = (_column(table, claim.y) - _column(table, claim.deviation_from)).abs()
        table = table.assign(**{_DEVIATION: deviation})
    y = claim.y if claim.deviation_from is None else _DEVIATION
    xs, ys, note = _points(table, claim.x, y, False, False)
    means = pd.Series(ys).groupby(xs).mean().sort_index()
    need = claim.min_points or 2
    if len(means) < need:
        raise _Fail(f"too few distinct x values: {len(means)} < {need}", len(xs))
    sign = 1.0 if claim.direction == "increasing" else -1.0
    values = means.to_numpy()
    changes = [sign * (b - a) / (abs(a) if a != 0 else 1.0) for a, b in itertools.pairwise(values)]
    worst = float(min(changes))
    ok = worst >= -claim.tolerance
    what = "" if claim.deviation_from is None else f" of |{claim.y} - {claim.deviation_from}|"
    return ClaimResult(
        claim_name(claim),
        claim.type,
        ok,
        worst,
        f">= {0.0 - claim.tolerance:g}",
        len(xs),
        None,
        f"smallest relative step{what} in the {claim.direction} direction: {worst:.4g} over "
        f"{len(means)} x values ({_means_text(means)}){note}",
    )


def _means_text(means: pd.Series) -> str:
    return ", ".join(f"{v:.4g}" for v in means.to_numpy())


def _close(claim: CloseClaim, table: pd.DataFrame) -> ClaimResult:
    ys, ts = _column(table, claim.y).to_numpy(), _column(table, claim.theory).to_numpy()
    keep = np.isfinite(ys) & np.isfinite(ts)
    ys, ts = ys[keep], ts[keep]
    if len(ys) < (claim.min_points or 1):
        raise _Fail(f"too few points with both columns finite: {len(ys)}", len(ys))
    errors = np.abs(ys - ts) / np.maximum(np.abs(ts), np.finfo(float).tiny)
    worst = float(errors.max())
    ok = worst <= claim.rtol
    return ClaimResult(
        claim_name(claim),
        claim.type,
        ok,
        worst,
        f"<= {claim.rtol:g}",
        len(ys),
        None,
        f"largest relative error of {claim.y} against {claim.theory}: {worst:.4g}",
    )


# the column name a deviation |y - column| is computed into (not a valid stored name)
_DEVIATION = " deviation"

_CHECKS: dict[type, Any] = {
    LoglogSlopeClaim: _within,
    SlopeClaim: _within,
    RatioClaim: _ratio,
    BoundedClaim: _bounded,
    MonotoneClaim: _monotone,
    CloseClaim: _close,
}


def evaluate(claim: ClaimSpec, table: pd.DataFrame) -> ClaimResult:
    """Check one claim on a wide results frame (rows of runs with status ``ok``)."""
    return dataclasses.replace(
        _verdict(claim, table),
        source=claim.source,
        basis=claim.basis or "",
        contradicts=claim.contradicts,
    )


def _verdict(claim: ClaimSpec, table: pd.DataFrame) -> ClaimResult:
    try:
        rows = table[table["status"] == "ok"] if "status" in table.columns else table
        rows = select(rows, claim.filter, claim.step)
        if claim.min_step is not None:
            rows = rows[rows["step"] >= claim.min_step]
        if claim.max_step is not None:
            rows = rows[rows["step"] <= claim.max_step]
        if rows.empty:
            raise _Fail("no finished runs match the claim's filter and step")
        return _CHECKS[type(claim)](claim, rows)
    except _Fail as fail:
        return ClaimResult(
            claim_name(claim), claim.type, False, math.nan, "", fail.n, None, str(fail)
        )
    except NormscopeError as err:
        return ClaimResult(claim_name(claim), claim.type, False, math.nan, "", 0, None, str(err))


def evaluate_all(claims: list[ClaimSpec], table: pd.DataFrame) -> list[ClaimResult]:
    return [evaluate(c, table) for c in claims]


def check_store(path: Any, experiment: str | None = None) -> dict[str, list[ClaimResult]]:
    """The claims of each stored experiment (or of ``experiment``), checked on its runs."""
    from normscope.experiments.frames import load, require_experiment, wide
    from normscope.experiments.spec import parse_spec
    from normscope.experiments.store import Store

    with Store(path, readonly=True) as store:
        if experiment is not None:
            require_experiment(store, experiment)
        names = [experiment] if experiment is not None else store.experiments()
        specs = {
            n: parse_spec(store.spec_toml(n), source=f"{path}:{n}", check=False) for n in names
        }
    out = {}
    for name, spec in specs.items():
        table = wide(load(path, name))
        out[name] = evaluate_all(spec.claim, table)
    return out
