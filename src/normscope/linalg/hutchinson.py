"""Hutchinson's stochastic trace estimator (hutchinson1989).

For probes ``z_1, ..., z_N`` with ``E[z z^T] = I``,

    tr(A) ~ (1/N) sum_i z_i^T A z_i,

is unbiased. With Rademacher probes (random signs, the default) the variance of one
sample is ``2 (||A||_F^2 - sum_i A_ii^2)``, the smallest of all i.i.d. probe laws
(Hutchinson 1989); Gaussian probes give ``2 ||A||_F^2``. The reported standard error is
the sample standard deviation of ``z_i^T A z_i`` over ``sqrt(N)``.

Hutch++ (:func:`normscope.linalg.hutchpp`) and XTrace (:func:`normscope.linalg.xtrace`)
beat it for the same number of products when a few large eigenvalues carry most of
``||A||_F^2``: their error falls like ``1/N`` instead of ``1/sqrt(N)``. Hutchinson remains
the better choice when that mass is spread over a bulk, as for the Hessians of the
batch-norm MLPs of ``benchmarks/bench_hessian.py``, and its samples are independent, so
the standard error is honest without any assumption on ``A``.

Example:
    >>> import torch
    >>> from normscope.linalg import hutchinson
    >>> a = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> est = hutchinson(lambda v: a @ v, 10, num_probes=20, dtype=torch.float64)
    >>> est.estimate  # Rademacher probes: z^T D z = tr D exactly for diagonal D
    55.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from normscope.errors import ConfigError
from normscope.linalg._space import (
    CountedOperator,
    Matmat,
    Matvec,
    Seed,
    Space,
    check_positive_int,
    gaussian,
    make_generator,
    rademacher,
    resolve_space,
)

Distribution = Literal["rademacher", "gaussian"]
# probes go to matmat this many at a time (to matvec one at a time: blocks of 16 vectors
# of a large model would be fresh memory on every block), so memory stays a few vectors
# whatever the number of probes; every probe is drawn on its own, so both paths see the
# same probes
PROBE_CHUNK = 16


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate, the standard error of its stochastic part, and its cost."""

    estimate: float
    standard_error: float
    num_matvecs: int
    num_probes: int


def hutchinson(
    matvec: Matvec,
    dim: int | Tensor,
    *,
    num_probes: int = 32,
    distribution: Distribution = "rademacher",
    matmat: Matmat | None = None,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> TraceEstimate:
    """Estimate ``tr(A)`` from ``num_probes`` products (module docstring).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``.
        dim: the dimension, or an example tensor giving dim, dtype and device.
        num_probes: products used; 32 puts the standard error at ~18 % of one sample's
            spread while staying cheap; at least 2 so that the error can be estimated.
        distribution: ``"rademacher"`` (lowest variance) or ``"gaussian"``.
        matmat: optional ``V (b, dim) -> A V``, called on blocks of up to 16 probes.
        seed: int or ``torch.Generator`` for the probes.
        dtype, device: of the vectors (default: from an example tensor, else torch's
            default dtype on CPU).
    """
    space = resolve_space(dim, dtype, device)
    num_probes = check_positive_int("num_probes", num_probes)
    if num_probes < 2:
        raise ConfigError(
            f"num_probes must be at least 2 to give a standard error; got {num_probes}."
        )
    gen = make_generator(seed)
    op = CountedOperator(matvec, matmat, space)
    samples = []
    chunk = PROBE_CHUNK if matmat is not None else 1
    for start in range(0, num_probes, chunk):
        probes = draw_probes(space, min(chunk, num_probes - start), distribution, gen)
        samples.append(quadratic_forms(probes, op(probes)))
    estimate, error = mean_and_error(torch.cat(samples))
    return TraceEstimate(estimate, error, op.num_matvecs, num_probes)


def draw_probes(
    space: Space, rows: int, distribution: Distribution, gen: torch.Generator
) -> Tensor:
    if distribution == "rademacher":
        return rademacher(space, rows, gen)
    if distribution == "gaussian":
        return gaussian(space, rows, gen)
    raise ConfigError(f"distribution must be 'rademacher' or 'gaussian'; got {distribution!r}.")


def quadratic_forms(probes: Tensor, images: Tensor) -> Tensor:
    """``z_i^T A z_i`` per row, accumulated in float64."""
    return (probes * images).sum(dim=1, dtype=torch.float64)


def mean_and_error(samples: Tensor) -> tuple[float, float]:
    """Sample mean and its standard error (sample standard deviation / sqrt(N))."""
    count = samples.shape[0]
    error = float(samples.std(correction=1)) / math.sqrt(count) if count > 1 else math.nan
    return float(samples.mean()), error
