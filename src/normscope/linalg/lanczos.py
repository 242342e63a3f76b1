"""Extreme eigenpairs of a symmetric operator by (block) Lanczos with full reorthogonalization.

Lanczos (Lanczos 1950; block form Golub and Underwood 1977; see Parlett, *The Symmetric
Eigenvalue Problem*, 1998, ch. 13) builds an orthonormal basis ``Q_m`` of the Krylov space
``span{q, A q, ..., A^{m-1} q}`` with the three-term recurrence

    A Q_m = Q_m T_m + q_{m+1} beta_m e_m^T,

where ``T_m = Q_m^T A Q_m`` is tridiagonal (block tridiagonal for a start block of
``b`` vectors). The eigenpairs ``(theta_i, s_i)`` of the small matrix ``T_m`` give Ritz pairs
``(theta_i, Q_m s_i)`` whose residual is available without any extra product:

    || A Q_m s_i - theta_i Q_m s_i || = |beta_m| |e_m^T s_i|      (block: ||B_m s_i,last||).

A pair counts as converged once that residual is at most ``tol * max(|theta_i|, tiny)``,
with ``tiny = sqrt(eps) * max_j |theta_j|`` so that eigenvalues near zero are judged on
the scale of the operator (their relative accuracy is not attainable in floating point).
The eigenvalue error is then about ``residual^2 / gap``, far below the residual.

Why it beats power iteration: after ``m`` products power iteration has resolved the top
eigenvalue with error ~ ``(lambda_2/lambda_1)^{2m}``, Lanczos with error ~
``exp(-4 m sqrt(gap ratio))`` (Kaniel-Paige-Saad bounds), it finds the top-k, the bottom-k,
or both ends from the same products, and it reports a residual certificate.

Full reorthogonalization (two classical Gram-Schmidt passes against the stored basis, as
matrix products) costs memory ``m * dim`` but keeps the basis orthogonal to working
precision, so no spurious copies ("ghosts") of converged eigenvalues appear. When the
Krylov space becomes invariant (``beta ~ 0``; e.g. a rank-2 operator, or a start built
from exact eigenvectors) a random vector orthogonal to the basis continues the iteration;
once the basis spans the whole space the decomposition is exact and the run stops.

Precision: the projected matrix and all coefficients that enter it are accumulated in
float64, whatever the dtype of the vectors. In float32 the basis stays orthogonal only
to about ``sqrt(dim) * eps``, which bounds the relative eigenvalue accuracy (measured
~2e-6 at dim 1e6); use float64 when verifying to tighter tolerances.

Multiplicity: a Krylov space grown from ``b`` start vectors holds at most ``b`` vectors of
any eigenspace, so an eigenvalue of multiplicity ``m`` is returned at most
``block_size`` times. With ``block_size >= m`` all its copies are found. The default
``block_size=1`` is the cheapest for the distinct eigenvalues that Hessians have in
practice.

Example:
    >>> import torch
    >>> from normscope.linalg import lanczos
    >>> gen = torch.Generator().manual_seed(0)
    >>> q, _ = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64, generator=gen))
    >>> lam = torch.linspace(-1.0, 10.0, 50, dtype=torch.float64)
    >>> a = q @ torch.diag(lam) @ q.T
    >>> result = lanczos(lambda v: a @ v, 50, k=2, which="both_ends", dtype=torch.float64)
    >>> [round(x, 6) for x in result.eigenvalues.tolist()], result.converged
    ([-1.0, 10.0], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from normscope.errors import ConfigError, NonFiniteError
from normscope.linalg._basis import Basis, orthonormalize_block
from normscope.linalg._space import (
    CountedOperator,
    Matmat,
    Matvec,
    Seed,
    Space,
    check_positive_float,
    check_positive_int,
    gaussian,
    make_generator,
    resolve_space,
)

Which = Literal["largest", "smallest", "both_ends", "largest_magnitude"]
WHICH = ("largest", "smallest", "both_ends", "largest_magnitude")


@dataclass(frozen=True)
class LanczosResult:
    """Wanted Ritz pairs, sorted by ascending eigenvalue, and what they cost.

    ``eigenvalues (k,)``, ``eigenvectors (k, dim)`` (unit rows), ``residuals (k,)`` (the
    recurrence estimate of ``||A v - lambda v||`` per pair) in the operator's dtype and
    device; ``converged`` is True when every pair meets the tolerance; ``iterations`` is
    the number of Lanczos (block) steps, ``num_matvecs`` the products used, ``restarts``
    the random vectors added after the Krylov space became invariant.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    converged: bool
    iterations: int
    num_matvecs: int
    restarts: int


def lanczos(
    matvec: Matvec,
    dim: int | Tensor,
    *,
    k: int = 1,
    which: Which = "largest",
    tol: float = 1e-6,
    max_iter: int | None = None,
    block_size: int = 1,
    v0: Tensor | None = None,
    matmat: Matmat | None = None,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> LanczosResult:
    """``k`` extreme eigenpairs of the symmetric operator ``v -> A v`` (module docstring).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``; ``A`` must be symmetric.
        dim: the dimension, or an example tensor giving dim, dtype and device.
        k: number of eigenpairs wanted.
        which: ``"largest"`` (algebraic, the default: the sharpness of a loss is the
            largest algebraic Hessian eigenvalue), ``"smallest"``, ``"both_ends"``
            (``ceil(k/2)`` largest and ``floor(k/2)`` smallest, as in ``scipy``'s ``"BE"``)
            or ``"largest_magnitude"``.
        tol: relative residual tolerance; ``1e-6`` is reachable in float32 for the
            dominant eigenvalues and gives eigenvalues accurate to about ``tol^2``.
        max_iter: cap on Lanczos steps; default ``max(100, 10 k)`` basis vectors (divided by
            ``block_size``), at most the dimension: enough for well separated extreme
            eigenvalues, while the stored basis costs ``max_iter * block_size * dim`` numbers.
        block_size: start vectors per block (see Multiplicity in the module docstring).
        v0: warm start ``(dim,)`` or ``(j, dim)``, e.g. eigenvectors from a previous call on
            a nearby operator. Rows are normalized and summed round-robin into the
            ``block_size`` start vectors (rows ``i, i+b, i+2b, ...`` form start ``i``);
            missing start vectors are random. A start orthogonal to a wanted eigenvector can
            never find it, which in practice never happens with warm starts.
        matmat: optional ``V (b, dim) -> A V``, used instead of ``matvec`` on every block.
        seed: int or ``torch.Generator`` for the random start and restarts.
        dtype, device: of the vectors (default: from an example tensor, else torch's default
            dtype on CPU). The small projected matrix is always solved in float64.
    """
    space = resolve_space(dim, dtype, device)
    k = check_positive_int("k", k)
    block_size = check_positive_int("block_size", block_size)
    tol = check_positive_float("tol", tol)
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}; got {which!r}.")
    if k > space.dim or block_size > space.dim:
        raise ConfigError(
            f"k={k} and block_size={block_size} must not exceed the dimension {space.dim}."
        )
    if max_iter is None:
        max_iter = default_max_iter(space.dim, k, block_size)
    max_iter = check_positive_int("max_iter", max_iter)
    if max_iter * block_size < k:
        raise ConfigError(
            f"max_iter={max_iter} steps of block_size={block_size} cannot give k={k} pairs; "
            "raise max_iter."
        )
    gen = make_generator(seed)
    op = CountedOperator(matvec, matmat, space)
    start = _start_block(v0, block_size, space, gen)
    return _iterate(op, start, k, which, tol, max_iter, gen)


def default_max_iter(dim: int, k: int = 1, block_size: int = 1) -> int:
    """The default cap on Lanczos steps: ``max(100, 10 k)`` basis vectors, at most
    ``dim``, in blocks of ``block_size`` (so at most ``block_size`` times as many products).

    Example:
        >>> default_max_iter(5000, k=2), default_max_iter(40), default_max_iter(5000, 1, 4)
        (100, 40, 25)
    """
    return math.ceil(min(dim, max(100, 10 * k)) / block_size)


def _start_block(v0: Tensor | None, b: int, space: Space, gen: torch.Generator) -> Tensor:
    start = gaussian(space, b, gen)
    if v0 is None:
        return start
    rows = v0.detach().to(dtype=space.dtype, device=space.device).reshape(-1, v0.shape[-1])
    if rows.shape[-1] != space.dim:
        raise ConfigError(
            f"v0 must have shape (dim,) or (j, dim) with dim={space.dim}; got {tuple(v0.shape)}."
        )
    norms = rows.norm(dim=1, keepdim=True)
    rows = torch.where(norms > 0, rows / norms.clamp_min(torch.finfo(space.dtype).tiny), rows)
    for i in range(min(b, rows.shape[0])):
        start[i] = rows[i::b].sum(dim=0)
    return start


@dataclass
class _State:
    """The growing decomposition ``A Q = Q T + Q_next B e^T``."""

    basis: Basis
    tridiagonal: Tensor
    scale: float = 0.0
    restarts: int = 0


def _iterate(
    op: CountedOperator,
    start: Tensor,
    k: int,
    which: Which,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
) -> LanczosResult:
    space = op.space
    max_rows = min(space.dim, max_iter * start.shape[0])
    state = _State(Basis(space, max_rows), torch.zeros((max_rows, max_rows), dtype=torch.float64))
    threshold = space.eps**0.75 * float(start.norm(dim=1).max())
    block, _, state.restarts = orthonormalize_block(start, state.basis, threshold, gen)
    for iteration in range(1, max_iter + 1):
        offset = state.basis.size
        block_next, coupling = _step(op, block, state, gen)
        size = state.basis.size
        theta, vectors = torch.linalg.eigh(state.tridiagonal[:size, :size])
        residuals = (coupling.T @ vectors[offset:size]).norm(dim=0)
        chosen = _select(theta, k, which)
        # At least one unwanted Ritz value must exist before stopping: a basis of exactly
        # k vectors can be an invariant subspace that holds the wrong eigenvalues.
        converged = (size > k or size == op.space.dim) and _meets_tolerance(
            theta, residuals, chosen, tol, space.eps
        )
        if converged or block_next.shape[0] == 0 or iteration == max_iter:
            break
        rows_next = slice(size, size + block_next.shape[0])
        state.tridiagonal[rows_next, offset:size] = coupling.T
        state.tridiagonal[offset:size, rows_next] = coupling
        block = block_next
    return _result(state, theta, vectors, residuals, chosen, converged, iteration, op)


def _step(
    op: CountedOperator, block: Tensor, state: _State, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One Lanczos step: the diagonal block of T, the next block and its coupling ``L``."""
    offset = state.basis.size
    b = block.shape[0]
    state.basis.append(block)
    image = op(block)
    # float32 GEMM accumulation errs by ~1e-4 at dim 1e6; the projected matrix needs better.
    diagonal = (block.double() @ image.double().T).cpu()
    # A nan or inf anywhere in the image reaches the diagonal, so checking it suffices.
    if not bool(torch.isfinite(diagonal).all()):
        raise NonFiniteError("the operator returned non-finite values (nan or inf); check matvec.")
    state.scale = max(state.scale, float(image.norm(dim=1).max()))
    state.tridiagonal[offset : offset + b, offset : offset + b] = (diagonal + diagonal.T) / 2
    residual = state.basis.project_out(image)
    if state.basis.size >= op.space.dim:
        # The basis spans the space: A Q = Q T holds exactly, nothing couples onward.
        return residual[:0], torch.zeros((b, 0), dtype=torch.float64)
    threshold = op.space.eps**0.75 * state.scale
    block_next, coupling, restarts = orthonormalize_block(residual, state.basis, threshold, gen)
    state.restarts += restarts
    return block_next, coupling


def _select(theta: Tensor, k: int, which: Which) -> Tensor:
    """Indices (ascending) into the ascending Ritz values of the wanted pairs."""
    n = theta.shape[0]
    if n < k:
        return torch.arange(0)
    if which == "largest":
        return torch.arange(n - k, n)
    if which == "smallest":
        return torch.arange(k)
    if which == "both_ends":
        low = k // 2
        return torch.cat([torch.arange(low), torch.arange(n - (k - low), n)])
    return torch.sort(torch.argsort(theta.abs(), descending=True)[:k]).values


def _meets_tolerance(
    theta: Tensor, residuals: Tensor, chosen: Tensor, tol: float, eps: float
) -> bool:
    tiny = eps**0.5 * float(theta.abs().max())
    bound = tol * theta[chosen].abs().clamp_min(tiny)
    return bool((residuals[chosen] <= bound).all())


def _result(
    state: _State,
    theta: Tensor,
    vectors: Tensor,
    residuals: Tensor,
    chosen: Tensor,
    converged: bool,
    iteration: int,
    op: CountedOperator,
) -> LanczosResult:
    space = op.space
    chosen = chosen if chosen.numel() else torch.arange(theta.shape[0])
    coefficients = vectors[:, chosen].T.to(dtype=space.dtype, device=space.device)
    eigenvectors = coefficients @ state.basis.rows
    eigenvectors = eigenvectors / eigenvectors.norm(dim=1, keepdim=True)
    as_output = {"dtype": space.dtype, "device": space.device}
    return LanczosResult(
        eigenvalues=theta[chosen].to(**as_output),
        eigenvectors=eigenvectors,
        residuals=residuals[chosen].to(**as_output),
        converged=converged,
        iterations=iteration,
        num_matvecs=op.num_matvecs,
        restarts=state.restarts,
    )
