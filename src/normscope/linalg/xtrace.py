"""XTrace, the exchangeable trace estimator (Epperly, Tropp, Webber 2024, "XTrace: Making
the most of every sample in stochastic trace estimation", SIAM J. Matrix Anal. Appl.;
epperly2024).

Hutch++ (:func:`normscope.linalg.hutchpp`) spends a third of its products on a sketch,
a third on the exact trace of the sketched subspace and a third on Hutchinson probes of
the rest, and the probes never enter the sketch. XTrace uses every test vector both
ways. With ``m = num_matvecs / 2`` Gaussian test vectors ``omega_i`` (rows of ``Omega``),
``Y = A Omega`` and its orthonormal basis ``Q``, leave-one-out basis ``Q_i`` of all the
columns of ``Y`` but ``y_i``, and ``P_i = I - Q_i Q_i^T``,

    t_i = tr(Q_i^T A Q_i) + (n - m + 1) u_i^T A u_i,      u_i = P_i omega_i / ||P_i omega_i||,

is unbiased for every ``i`` (``omega_i`` is independent of ``Q_i``, and ``u_i`` is uniform
on the unit sphere of the ``n - m + 1`` dimensional range of ``P_i``), and the estimate is
their mean. Each ``t_i`` deflates ``m - 1`` directions, so at the same budget XTrace
deflates about ``3/2`` times as many as Hutch++, and averaging the ``m`` exchangeable
copies removes much of the sketch's own variance. Products: ``m`` for ``Y`` and ``m`` for
``A Q``; everything else (the downdates to ``Q_i``) is algebra on ``m x m`` matrices
built from ``Q``, ``A Q``, ``Omega`` and the triangular factor of ``Y``
(epperly2024, sec. 2.1). The standard error is the spread of the ``t_i`` over
``sqrt(m)`` (epperly2024, sec. 2.3); it is an estimate, the ``t_i`` are not independent.

When the test vectors sketch the whole range (rank of ``A`` below ``m``, or ``m = n``),
``tr(Q^T A Q)`` is the trace itself, and it is returned with standard error 0.

Example:
    >>> import torch
    >>> from normscope.linalg import xtrace
    >>> a = torch.diag(0.5 ** torch.arange(40, dtype=torch.float64))
    >>> est = xtrace(lambda v: a @ v, 40, num_matvecs=30, dtype=torch.float64)
    >>> abs(est.estimate - 2.0) < 1e-3, est.num_matvecs  # exact trace is 2 - 2**-39
    (True, 30)
"""

from __future__ import annotations

import torch
from torch import Tensor

from normscope.errors import ConfigError
from normscope.linalg._space import (
    CountedOperator,
    Matmat,
    Matvec,
    Seed,
    check_positive_int,
    gaussian,
    make_generator,
    resolve_space,
)
from normscope.linalg.hutchinson import TraceEstimate, mean_and_error


def xtrace(
    matvec: Matvec,
    dim: int | Tensor,
    *,
    num_matvecs: int = 60,
    matmat: Matmat | None = None,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> TraceEstimate:
    """Estimate ``tr(A)`` with XTrace from ``num_matvecs`` products (module docstring).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``; ``A`` symmetric.
        dim: the dimension, or an example tensor giving dim, dtype and device.
        num_matvecs: product budget, at least 4; ``m = num_matvecs // 2`` test vectors
            (at most ``dim``), so an odd budget leaves one product unused. 60 gives 30
            test vectors: each copy ``t_i`` deflates 29 directions, enough for the
            outliers of a classifier's Hessian (about one per class).
        matmat: optional ``V (b, dim) -> A V``; each of the two stages is one call.
        seed: int or ``torch.Generator`` for the test vectors.
        dtype, device: of the vectors (default: from an example tensor, else torch's
            default dtype on CPU).

    Returns:
        A :class:`~normscope.linalg.TraceEstimate`; ``num_probes`` is ``m``.
    """
    space = resolve_space(dim, dtype, device)
    num_matvecs = check_positive_int("num_matvecs", num_matvecs)
    if num_matvecs < 4:
        raise ConfigError(
            f"num_matvecs must be at least 4 (two test vectors, two products each); "
            f"got {num_matvecs}."
        )
    m = min(num_matvecs // 2, space.dim)
    op = CountedOperator(matvec, matmat, space)
    omega = gaussian(space, m, make_generator(seed))
    omega = omega * (space.dim**0.5 / omega.norm(dim=1, keepdim=True))
    y = op(omega)
    q, r = torch.linalg.qr(y.T)
    q = q.T
    z = op(q)
    h = _gram(q, z)
    h = (h + h.T) / 2
    r = r.double().cpu()
    diagonal = r.diagonal().abs()
    if m == space.dim or not bool((diagonal > space.eps * m * diagonal.max()).all()):
        # Y does not have full rank: its range holds the range of A, so tr(Q^T A Q) = tr(A).
        return TraceEstimate(float(h.trace()), 0.0, op.num_matvecs, m)
    samples = _leave_one_out(h, r, _gram(q, omega), _dots(omega, y), space.dim)
    estimate, error = mean_and_error(samples)
    return TraceEstimate(estimate, error, op.num_matvecs, m)


def _gram(a: Tensor, b: Tensor) -> Tensor:
    """``a b^T`` as a float64 CPU matrix (float32 GEMM accumulates blockwise: ~1e-8 relative)."""
    return (a @ b.T).double().cpu()


def _dots(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=1, dtype=torch.float64).cpu()


def _leave_one_out(h: Tensor, r: Tensor, w: Tensor, wy: Tensor, n: int) -> Tensor:
    """The ``m`` estimates ``t_i`` from small matrices (float64).

    ``h = Q^T A Q``, ``r``: ``Y = Q r`` (columns), ``w = Q^T Omega``,
    ``wy_i = omega_i^T A omega_i``. Dropping ``y_i`` removes from ``range(Q)`` the unit
    direction ``Q s_i``, ``s_i`` the normalized column ``i`` of ``r^{-T}`` (it is orthogonal
    to every other column of ``r``), so ``Q_i Q_i^T = Q (I - s_i s_i^T) Q^T``. With
    ``c_i = (I - s_i s_i^T) w_i`` the coordinates of ``omega_i`` in ``range(Q_i)``:

        tr(Q_i^T A Q_i)              = tr(h) - s_i^T h s_i
        (P_i omega_i)^T A (P_i omega_i) = wy_i - 2 r_i^T c_i + c_i^T h c_i
        ||P_i omega_i||^2            = n - ||w_i||^2 + (s_i^T w_i)^2,

    using ``omega_i^T A Q c = (Q^T A omega_i)^T c = (Q^T y_i)^T c = r_i^T c`` (``A``
    symmetric), which saves forming ``(A Q)^T Omega``.
    """
    m = h.shape[0]
    s = torch.linalg.solve_triangular(r.T, torch.eye(m, dtype=torch.float64), upper=False)
    s = s / s.norm(dim=0, keepdim=True)
    along = (s * w).sum(dim=0)
    c = w - s * along
    deflated = torch.trace(h) - (s * (h @ s)).sum(dim=0)
    quadratic = wy - 2 * (r * c).sum(dim=0) + (c * (h @ c)).sum(dim=0)
    norm_sq = n - (w * w).sum(dim=0) + along**2
    return deflated + (n - m + 1) * quadratic / norm_sq
