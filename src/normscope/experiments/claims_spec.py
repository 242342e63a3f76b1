"""The ``[[claim]]`` tables of a spec: what the stored numbers must show.

Columns a claim names are those of :func:`normscope.results.wide`: dotted config
fields (``subject.net.width``), measurement names (``sharpness``), their scalar
details (``fisher_spectrum.mean``), theory columns (``theory.lambda_max``) and
``step``. ``filter`` keeps rows whose columns equal the given values (a list: any of
them; a list inside the list: a list-valued column such as ``[[128, 32]]``); ``step``
picks which training step of each run is used ("last" by default,
"first", a number, or "all": every tracked step, e.g. for a claim on a training
curve), and ``min_step`` / ``max_step`` keep only steps in that window (inclusive).

Where a claim comes from (``source``, shown beside its verdict in reports and
``normscope check``):

- ``"paper"``: the paper states it; ``basis`` says where, in words of our own;
- ``"theory"``: our derivation from the paper's formulas; ``basis`` gives it in a sentence;
- ``"finding"``: what we measured that goes beyond or against the paper; ``basis`` says
  which reading of the paper it goes beyond or against, and ``contradicts = true`` marks
  a finding that contradicts that reading (shown as such, never hidden).

Example::

    [[claim]]
    name = "no norm: lambda_max grows like width"
    paper = "karakida2019"
    source = "paper"
    basis = "abstract and main theorem: lambda_max of the FIM grows linearly in the width"
    type = "loglog_slope"
    x = "subject.net.width"
    y = "fisher_spectrum"
    within = [0.85, 1.15]
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from normscope.strict import NoBoolNumbers

Scalar = str | int | float | bool
# A filter value: one value, or a list of values any of which may match; a list-valued
# column (hidden widths [128, 32], a placement) is matched by a list inside that list.
FilterValue = Scalar | list[Scalar | list[Scalar]]


class _Claim(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    filter: dict[str, FilterValue] = Field(default_factory=dict)
    step: Literal["first", "last", "all"] | int = "last"
    min_step: int | None = None
    max_step: int | None = None
    min_points: int | None = Field(default=None, ge=1)
    paper: str | None = None
    source: Literal["paper", "theory", "finding"] | None = None
    basis: str | None = None
    contradicts: bool = False

    @model_validator(mode="after")
    def _contradicts_needs_finding(self) -> _Claim:
        if self.contradicts and self.source != "finding":
            raise ValueError(
                "`contradicts = true` marks a finding against a reading of the paper; it "
                f'needs `source = "finding"` (got source {self.source!r})'
            )
        return self


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"`within` must be [low, high] with low <= high, got {list(pair)}")
    return pair


class LoglogSlopeClaim(_Claim):
    """Least-squares slope of log y against log x lies in ``within``."""

    type: Literal["loglog_slope"]
    x: str
    y: str
    within: tuple[float, float]

    @model_validator(mode="after")
    def _check(self) -> LoglogSlopeClaim:
        _ordered(self.within)
        return self


class SlopeClaim(_Claim):
    """Least-squares slope of y (or log y with ``logy``) against x lies in ``within``."""

    type: Literal["slope"]
    x: str
    y: str
    logy: bool = False
    within: tuple[float, float]

    @model_validator(mode="after")
    def _check(self) -> SlopeClaim:
        _ordered(self.within)
        return self


class _OneSided(_Claim):
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _bound_given(self) -> _OneSided:
        if self.above is None and self.below is None:
            raise ValueError("give a bound: `above`, `below` or both")
        return self


class RatioClaim(_OneSided):
    """mean(y | by == a) / mean(y | by == b) is above/below the bounds."""

    type: Literal["ratio"]
    y: str
    by: str
    a: Scalar
    b: Scalar


class BoundedClaim(_OneSided):
    """Every y over the sweep is below ``below`` (max) and above ``above`` (min)."""

    type: Literal["bounded"]
    y: str


class MonotoneClaim(_Claim):
    """The mean of y per x value increases (decreases) with x; each step may go the
    wrong way by at most ``tolerance`` relative to the previous mean. With
    ``deviation_from`` (a column, e.g. a theory column) the claim is on |y − that column|:
    how far a measured value is from its prediction."""

    type: Literal["monotone"]
    x: str
    y: str
    direction: Literal["increasing", "decreasing"]
    tolerance: float = Field(default=0.0, ge=0)
    deviation_from: str | None = None


class CloseClaim(_Claim):
    """|y - theory| / |theory| <= rtol at every point (y: measured, theory: a column)."""

    type: Literal["close"]
    y: str
    theory: str
    rtol: float = Field(gt=0)


ClaimSpec = Annotated[
    LoglogSlopeClaim | SlopeClaim | RatioClaim | BoundedClaim | MonotoneClaim | CloseClaim,
    Field(discriminator="type"),
]
