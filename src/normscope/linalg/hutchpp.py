"""Hutch++ trace estimator (Meyer, Musco, Musco, Woodruff 2021, "Hutch++: Optimal
Stochastic Trace Estimation", SOSA; meyer2021).

With a budget of ``m`` products, draw a sketch ``S`` of ``m/3`` random sign vectors, take
an orthonormal basis ``Q`` of ``A S`` (which captures the top eigenspace), compute the
trace on that subspace exactly and estimate the rest with Hutchinson on the deflated
operator, using ``m/3`` probes ``g_i`` projected by ``P = I - Q Q^T``:

    tr(A) ~ tr(Q^T A Q) + (3/m) sum_i g_i^T P A P g_i.

Products: ``m/3`` for ``A S``, ``m/3`` for ``A Q`` and ``m/3`` for the residual probes (any
remainder of ``m`` goes to the probes). For positive semi-definite ``A`` the relative
error is ``O(1/m)`` against Hutchinson's ``O(1/sqrt(m))``: it wins whenever a few large
eigenvalues carry most of ``||A||_F^2`` (fast-decaying spectra, e.g. Fisher matrices
and the Hessians of small models). For spectra whose mass is spread over a bulk the
sketch buys little and Hutchinson is better, having all ``m`` products as probes: so it
was on the Hessians of the batch-norm MLPs of ``benchmarks/bench_hessian.py``.
:func:`normscope.linalg.xtrace` uses the same products more fully. The reported
standard error is that of the stochastic (residual) part; the sketched part
``tr(Q^T A Q)`` has no sampling error of its own once ``Q`` is fixed.

Example:
    >>> import torch
    >>> from normscope.linalg import hutchpp
    >>> a = torch.diag(0.5 ** torch.arange(40, dtype=torch.float64))
    >>> est = hutchpp(lambda v: a @ v, 40, num_matvecs=30, dtype=torch.float64)
    >>> abs(est.estimate - 2.0) < 1e-3, est.num_matvecs  # exact trace is 2 - 2**-39
    (True, 30)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from normscope.errors import ConfigError
from normscope.linalg._space import (
    CountedOperator,
    Matmat,
    Matvec,
    Seed,
    check_positive_int,
    make_generator,
    rademacher,
    resolve_space,
)
from normscope.linalg.hutchinson import PROBE_CHUNK, mean_and_error, quadratic_forms


@dataclass(frozen=True)
class HutchppResult:
    """The estimate, the standard error of its stochastic part, and its parts and cost.

    ``sketch_trace`` is ``tr(Q^T A Q)`` over the ``sketch_size`` sketched directions;
    ``num_probes`` residual probes give the rest.
    """

    estimate: float
    standard_error: float
    num_matvecs: int
    num_probes: int
    sketch_size: int
    sketch_trace: float


def hutchpp(
    matvec: Matvec,
    dim: int | Tensor,
    *,
    num_matvecs: int = 99,
    matmat: Matmat | None = None,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> HutchppResult:
    """Estimate ``tr(A)`` with Hutch++ from ``num_matvecs`` products (module docstring).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``; ``A`` symmetric.
        dim: the dimension, or an example tensor giving dim, dtype and device.
        num_matvecs: product budget ``m``, at least 4 (sketch 1, probes 2); 99 gives a
            33-dimensional sketch, enough to hold the outliers of a classifier's Hessian
            (about one per class) with room to spare. The sketch never exceeds ``dim``.
        matmat: optional ``V (b, dim) -> A V``; the sketch and its image are one call each,
            the probes go in blocks of up to 16.
        seed: int or ``torch.Generator`` for sketch and probes.
        dtype, device: of the vectors (default: from an example tensor, else torch's
            default dtype on CPU).
    """
    space = resolve_space(dim, dtype, device)
    num_matvecs = check_positive_int("num_matvecs", num_matvecs)
    if num_matvecs < 4:
        raise ConfigError(
            f"num_matvecs must be at least 4 (sketch 1, two probes); got {num_matvecs}."
        )
    sketch_size = min(num_matvecs // 3, space.dim)
    num_probes = num_matvecs - 2 * sketch_size
    gen = make_generator(seed)
    op = CountedOperator(matvec, matmat, space)
    basis = _orthonormal_rows(op(rademacher(space, sketch_size, gen)))
    sketch_trace = float(quadratic_forms(basis, op(basis)).sum())
    samples = []
    chunk = PROBE_CHUNK if matmat is not None else 1
    for start in range(0, num_probes, chunk):
        probes = rademacher(space, min(chunk, num_probes - start), gen)
        probes = probes - (probes @ basis.T) @ basis
        samples.append(quadratic_forms(probes, op(probes)))
    residual_part, error = mean_and_error(torch.cat(samples))
    return HutchppResult(
        estimate=sketch_trace + residual_part,
        standard_error=error,
        num_matvecs=op.num_matvecs,
        num_probes=num_probes,
        sketch_size=sketch_size,
        sketch_trace=sketch_trace,
    )


def _orthonormal_rows(rows: Tensor) -> Tensor:
    """An orthonormal basis (as rows) of the span of ``rows``, by Householder QR."""
    q, _ = torch.linalg.qr(rows.T)
    return q.T
