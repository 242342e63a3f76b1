"""The dominant eigenpair (largest magnitude) of a symmetric operator by power iteration.

Power iteration (von Mises 1929; Golub and Van Loan, *Matrix Computations*, 4th ed.,
sec. 7.3) repeats ``v <- A v / ||A v||`` and reports the Rayleigh quotient
``theta = v^T A v`` of the unit iterate. For symmetric ``A`` with
``|lambda_1| > |lambda_2|`` the error of ``theta`` shrinks like ``(lambda_2/lambda_1)^{2t}``.
It stops when ``|theta_t - theta_{t-1}| <= tol * |theta_t|``.

It is kept for comparison and for spectral norms (``||J||_2^2`` is the top eigenvalue of
``J^T J``, which is positive semi-definite, so largest magnitude = largest). :func:`lanczos`
needs far fewer products when the gap is small and gives a residual certificate; power
iteration needs no stored basis (memory ``O(dim)``), which matters when ``dim`` is huge.
If ``lambda`` and ``-lambda`` are both dominant the iterate never settles; use
:func:`lanczos` with ``which="both_ends"`` then.

Example:
    >>> import torch
    >>> from normscope.linalg import power_iteration
    >>> a = torch.diag(torch.tensor([3.0, 1.0, -0.5], dtype=torch.float64))
    >>> result = power_iteration(lambda v: a @ v, 3, tol=1e-12, dtype=torch.float64)
    >>> round(result.value, 8), result.converged
    (3.0, True)
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
    check_positive_float,
    check_positive_int,
    gaussian,
    make_generator,
    resolve_space,
)


@dataclass(frozen=True)
class PowerResult:
    """Rayleigh quotient ``value`` of the unit ``vector (dim,)``, its residual
    ``||A v - value v||``, whether the change criterion was met, and the cost."""

    value: float
    vector: Tensor
    residual: float
    converged: bool
    iterations: int
    num_matvecs: int


def power_iteration(
    matvec: Matvec,
    dim: int | Tensor,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
    v0: Tensor | None = None,
    matmat: Matmat | None = None,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> PowerResult:
    """Dominant eigenvalue (by magnitude) and eigenvector of ``v -> A v`` (module docstring).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``; ``A`` must be symmetric.
        dim: the dimension, or an example tensor giving dim, dtype and device.
        tol: relative change of the Rayleigh quotient between iterations; ``1e-6`` is a
            little above float32 rounding of the quotient.
        max_iter: cap on products; 1000 because the rate ``(lambda_2/lambda_1)^2`` per step
            can be close to one for the flat spectra of trained networks.
        v0: warm start ``(dim,)``; default a Gaussian vector from ``seed``.
        matmat: optional ``V (1, dim) -> A V``, used instead of ``matvec`` when given.
        seed: int or ``torch.Generator`` for the random start.
        dtype, device: of the vectors (default: from an example tensor, else torch's
            default dtype on CPU).
    """
    space = resolve_space(dim, dtype, device)
    tol = check_positive_float("tol", tol)
    max_iter = check_positive_int("max_iter", max_iter)
    op = CountedOperator(matvec, matmat, space)
    v = gaussian(space, 1, make_generator(seed)) if v0 is None else _as_row(v0, space.dim)
    v = v.to(dtype=space.dtype, device=space.device)
    v = v / v.norm()
    previous = None
    for iteration in range(1, max_iter + 1):
        image = op(v)
        value = float((v * image).sum())
        residual = float((image - value * v).norm())
        # A zero residual means v is an exact eigenvector (also when A v = 0).
        converged = residual == 0.0 or (
            previous is not None and abs(value - previous) <= tol * abs(value)
        )
        if converged or iteration == max_iter:
            break
        previous, v = value, image / image.norm()
    return PowerResult(value, v[0], residual, converged, iteration, op.num_matvecs)


def _as_row(v0: Tensor, dim: int) -> Tensor:
    if v0.numel() != dim or float(v0.norm()) == 0.0:
        raise ConfigError(
            f"v0 must be a nonzero vector with {dim} entries; got shape {tuple(v0.shape)}."
        )
    return v0.detach().reshape(1, dim)
