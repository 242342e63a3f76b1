"""The ``[[claim]]`` tables of a spec: what the stored numbers must show.

Columns a claim names are those of :func:`normscope.results.wide`: dotted config
fields (``subject.net.width``), measurement names (``sharpness``), their scalar
details (``fisher_spectrum.mean``), theory columns (``theory.lambda_max``) and
``step``. ``filter`` keeps rows whose columns equal the given values (a list: any of
them); ``step`` picks which training step of each run is used ("last" by default,
"first", a number, or "all": every tracked step, e.g. for a claim on a training
curve), and ``min_step`` / ``max_step`` keep only steps in that window (inclusive).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from normscope.strict import NoBoolNumbers

Scalar = str | int | float | bool


class _Claim(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    filter: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    step: Literal["first", "last", "all"] | int = "last"
    min_step: int | None = None
    max_step: int | None = None
    min_points: int | None = Field(default=None, ge=1)
    paper: str | None = None


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
    wrong way by at most ``tolerance`` relative to the previous mean."""

    type: Literal["monotone"]
    x: str
    y: str
    direction: Literal["increasing", "decreasing"]
    tolerance: float = Field(default=0.0, ge=0)


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
