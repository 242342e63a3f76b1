"""Extreme eigenpairs of a symmetric operator by (block) Lanczos with partial reorthogonalization.

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

Orthogonality. In floating point the recurrence loses orthogonality (Paige 1971: along
the Ritz vectors that converge), and once it is lost spurious copies ("ghosts") of
converged eigenvalues appear. It is enough to keep the basis semi-orthogonal,
``|q_i^T q_j| <= sqrt(eps)``: ``T_m`` is then the projection of ``A`` to working accuracy
(Simon 1984). Partial reorthogonalization (Simon 1984) estimates ``|q_k^T q_{m+1}|`` for
every ``k`` from a recurrence on the entries of ``T`` (a few scalar operations per step)
and runs one Gram-Schmidt pass against the stored basis, on two consecutive vectors,
only when the estimate passes ``sqrt(eps)``. The recurrence is driven by the error each
step actually makes, measured as the gap between ``q_{m-1}^T A q_m`` and ``beta_{m-1}``
(rounding, and any asymmetry of the operator: measured ~1e-7 of ``||A||`` for float32
Hessians of small nets, ~1e-5 for a 935k-parameter MLP, up to 5e-3 with batch norm in
its epsilon regime), so a noisy operator gets reorthogonalized as often as it needs. On
the benchmark MLP that is 2-6 passes in a 25-36 step run, instead of two passes over the
whole basis every step.
Blocks of several vectors (``block_size > 1``) are orthogonalized fully, by two
classical Gram-Schmidt passes against the stored basis. When the Krylov space becomes
invariant (``beta ~ 0``; e.g. a rank-2 operator, or a start built from exact
eigenvectors) a random vector orthogonal to the basis continues the iteration; once the
basis spans the whole space the decomposition is exact and the run stops.

Warm starts (thick restart). ``v0`` rows (e.g. the previous call's Ritz vectors while
training, where the operator drifts between calls) first get a Rayleigh-Ritz step: their
span ``V`` is multiplied once (one product per row), the wanted Ritz vectors of
``V^T A V`` are taken, and Lanczos starts from their sum with its image already known.
Unlike summing the rows blindly, this follows eigenvectors that rotate inside a cluster
of close eigenvalues or swap order between calls, as thick-restart Lanczos (Wu and Simon
2000) does with the Ritz vectors it keeps; giving the vectors of the last two calls makes
the Rayleigh-Ritz step extrapolate the drift as well.

Precision: the projected matrix is stored and solved in float64, whatever the dtype of
the vectors; its entries are dot products in the vectors' dtype (``torch.dot``, which
accumulates to ``eps`` relative accuracy), as accurate as one product ``A q`` in that
dtype is anyway. In float32 the eigenvalues are accurate to about ``eps ||A||`` (~1e-6
relative for the top of a Hessian); use float64 when verifying to tighter tolerances.

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
    the number of Lanczos (block) steps, ``num_matvecs`` the products used (warm-start
    rows included), ``restarts`` the random vectors added after the Krylov space became
    invariant.
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
        v0: warm start ``(dim,)`` or ``(j, dim)``, e.g. eigenvectors from previous calls on
            a nearby operator. The span of the rows gets one Rayleigh-Ritz step (``j``
            products, one ``matmat`` call when given); the wanted Ritz vectors ``i, i+b,
            i+2b, ...`` are summed into start vector ``i`` of the ``b = block_size``, and
            missing start vectors are random. Rows that are zero or linearly dependent on
            earlier rows are dropped. A start orthogonal to a wanted eigenvector can never
            find it, which in practice never happens with warm starts.
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
    rows = None if v0 is None else _warm_rows(v0, space)
    max_rows = min(space.dim, max_iter * block_size)
    state = _State(Basis(space, max_rows), torch.zeros((max_rows, max_rows), dtype=torch.float64))
    state.omega = torch.zeros(max_rows + 1, dtype=torch.float64)
    state.omega[0] = 1.0
    state.omega_previous = torch.zeros(max_rows + 1, dtype=torch.float64)
    if rows is None or rows.shape[0] == 0:
        start, image = _random_start(block_size, state, gen), None
    else:
        start, image = _ritz_start(op, rows, k, which, block_size, state, gen)
    return _iterate(op, start, image, k, which, tol, max_iter, gen, state)


def default_max_iter(dim: int, k: int = 1, block_size: int = 1) -> int:
    """The default cap on Lanczos steps: ``max(100, 10 k)`` basis vectors, at most
    ``dim``, in blocks of ``block_size`` (so at most ``block_size`` times as many products).

    Example:
        >>> default_max_iter(5000, k=2), default_max_iter(40), default_max_iter(5000, 1, 4)
        (100, 40, 25)
    """
    return math.ceil(min(dim, max(100, 10 * k)) / block_size)


def _warm_rows(v0: Tensor, space: Space) -> Tensor:
    """Orthonormal rows spanning the nonzero, independent rows of ``v0``."""
    rows = v0.detach().to(dtype=space.dtype, device=space.device).reshape(-1, v0.shape[-1])
    if rows.shape[-1] != space.dim:
        raise ConfigError(
            f"v0 must have shape (dim,) or (j, dim) with dim={space.dim}; got {tuple(v0.shape)}."
        )
    norms = rows.norm(dim=1)
    rows = rows[norms > 0] / norms[norms > 0, None]
    if rows.shape[0] == 0:
        return rows
    q, r = torch.linalg.qr(rows.T)
    diagonal = r.diagonal().abs()
    independent = diagonal > space.eps**0.5 * diagonal.max()
    return q.T[independent]


def _random_start(b: int, state: _State, gen: torch.Generator) -> Tensor:
    threshold = state.basis.space.eps**0.75
    start, _, state.restarts = orthonormalize_block(
        gaussian(state.basis.space, b, gen), state.basis, threshold, gen
    )
    return start


def _ritz_start(
    op: CountedOperator,
    rows: Tensor,
    k: int,
    which: Which,
    b: int,
    state: _State,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Rayleigh-Ritz on ``span(rows)``: start block from the wanted Ritz vectors, and its image."""
    images = op(rows)
    projected = (rows.double() @ images.double().T).cpu()
    _check_finite(projected)
    theta, vectors = torch.linalg.eigh((projected + projected.T) / 2)
    chosen = _select(theta, min(k, theta.shape[0]), which)
    groups = [chosen[i::b] for i in range(min(b, chosen.shape[0]))]
    coefficients = torch.stack([vectors[:, g].sum(dim=1) for g in groups])
    coefficients = coefficients / coefficients.norm(dim=1, keepdim=True)
    as_space = {"dtype": rows.dtype, "device": rows.device}
    start = coefficients.to(**as_space) @ rows
    image = coefficients.to(**as_space) @ images
    if start.shape[0] < b:
        basis = Basis(op.space, b)
        basis.append(start)
        threshold = op.space.eps**0.75
        extra, _, _ = orthonormalize_block(
            basis.project_out(gaussian(op.space, b - start.shape[0], gen)), basis, threshold, gen
        )
        start, image = torch.cat([start, extra]), torch.cat([image, op(extra)])
    state.scale = float(images.norm(dim=1).max())
    return start, image


@dataclass
class _State:
    """The growing decomposition ``A Q = Q T + Q_next B e^T``, and its orthogonality."""

    basis: Basis
    tridiagonal: Tensor
    scale: float = 0.0
    restarts: int = 0
    omega: Tensor | None = None  # estimated |q_k^T q_j| of the newest vector (single vector)
    omega_previous: Tensor | None = None
    reorthogonalize: bool = False
    reorthogonalizations: int = 0


def _iterate(
    op: CountedOperator,
    block: Tensor,
    image: Tensor | None,
    k: int,
    which: Which,
    tol: float,
    max_iter: int,
    gen: torch.Generator,
    state: _State,
) -> LanczosResult:
    space = op.space
    for iteration in range(1, max_iter + 1):
        offset = state.basis.size
        block_next, coupling = _step(op, block, image, state, gen)
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
        block, image = block_next, None
    return _result(state, theta, vectors, residuals, chosen, converged, iteration, op)


def _step(
    op: CountedOperator, block: Tensor, image: Tensor | None, state: _State, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One Lanczos step: the diagonal block of T, the next block and its coupling ``L``."""
    offset = state.basis.size
    b = block.shape[0]
    state.basis.append(block)
    image = op(block) if image is None else image
    if b == 1:
        return _single_step(image[0], state, gen)
    # float32 GEMM accumulation errs by ~1e-4 at dim 1e6; the projected matrix needs better.
    diagonal = (block.double() @ image.double().T).cpu()
    _check_finite(diagonal)
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


def _single_step(image: Tensor, state: _State, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``beta q_next = A q - alpha q - beta_prev q_prev``, reorthogonalized when needed.

    ``q`` and ``q_prev`` are the last rows of the basis, so both terms are removed by one
    matrix-vector product. ``q_prev^T A q`` against ``q^T A q_prev = beta_prev`` measures
    the step's own error (rounding, and any asymmetry of the operator): it drives the
    estimate of the loss of orthogonality (:func:`_update_omega`), and one Gram-Schmidt
    pass against the whole basis runs, on this vector and the next, when the estimate
    passes ``sqrt(eps)``.
    When ``beta`` is so small that rounding matters (``beta <= sqrt(eps) ||A q||``) a second
    local pass cleans ``w`` and its part along ``q`` is added to ``alpha``.
    """
    basis = state.basis
    j = basis.size - 1
    local = basis.rows[max(j - 1, 0) :]
    # torch.dot, not one matrix-vector product for both: float32 GEMV accumulates with an
    # error ~sqrt(dim) eps, which biased float32 eigenvalues by 5e-6 at dim 2e4
    alpha = float(torch.dot(local[-1], image))
    if not math.isfinite(alpha):  # a nan or inf anywhere in A q reaches alpha
        _check_finite(torch.tensor(alpha))
    beta_prev = float(state.tridiagonal[j, j - 1]) if j > 0 else 0.0
    # q_prev^T A q should equal q^T A q_prev = beta_prev: the gap is this step's error
    error = abs(float(torch.dot(local[0], image)) - beta_prev) if j > 0 else 0.0
    coefficients = torch.tensor([beta_prev, alpha][-local.shape[0] :], dtype=image.dtype)
    w = torch.addmv(image, local.T, coefficients.to(image.device), alpha=-1.0)
    beta = float(w.norm())
    eps = basis.space.eps
    if beta <= eps**0.5 * math.hypot(alpha, beta_prev):
        again = local @ w
        w.addmv_(local.T, again, alpha=-1.0)
        alpha += float(again[-1])
        beta = float(w.norm())
    state.tridiagonal[j, j] = alpha
    # ||A q||^2 = alpha^2 + beta_prev^2 + beta^2 in exact arithmetic: no pass over A q.
    state.scale = max(state.scale, math.sqrt(alpha**2 + beta_prev**2 + beta**2))
    if basis.size >= basis.space.dim:
        # The basis spans the space: A Q = Q T holds exactly, nothing couples onward.
        return w.new_zeros((0, w.shape[0])), torch.zeros((1, 0), dtype=torch.float64)
    threshold = eps**0.75 * state.scale
    if beta > threshold:
        loss = _update_omega(state, j, beta, max(eps * state.scale, error))
        due = state.reorthogonalize
        if due or loss > eps**0.5:
            w.sub_((basis.rows @ w) @ basis.rows)
            beta = float(w.norm())
            state.omega[: j + 1] = eps
            state.reorthogonalize = not due  # once more on the next vector (Simon 1984)
            state.reorthogonalizations += 1
    if beta > threshold:
        slot = basis.slot()
        q_next = torch.div(w, beta, out=slot) if slot is not None else w / beta
        return q_next.unsqueeze(0), torch.tensor([[beta]], dtype=torch.float64)
    # An invariant subspace: continue from a random vector orthogonal to the basis.
    block_next, coupling, restarts = orthonormalize_block(w.unsqueeze(0), basis, threshold, gen)
    state.restarts += restarts
    fresh = torch.full_like(state.omega, eps)  # a restart is orthogonal to the whole basis
    fresh[j + 1] = 1.0
    state.omega_previous, state.omega = state.omega, fresh
    state.reorthogonalize = False
    return block_next, coupling


def _update_omega(state: _State, j: int, beta: float, error: float) -> float:
    """Simon's (1984) recurrence for ``omega_k ~ |q_k^T q_next|``; returns ``max_k omega_k``.

    From ``A Q = Q T + q_next beta e_j^T + F`` with local errors ``F`` of size ``error``:

        beta_j w_{j+1,k} = beta_k w_{j,k+1} + (alpha_k - alpha_j) w_{j,k}
                           + beta_{k-1} w_{j,k-1} - beta_{j-1} w_{j-1,k} +- error,

    with ``w_{j,j} = 1``; each rounding term is given the sign that makes it grow.
    """
    t = state.tridiagonal
    current, previous = state.omega, state.omega_previous
    new = torch.zeros_like(current)
    if j > 0:
        k = torch.arange(j)
        alphas, betas = t.diagonal()[: j + 1], t.diagonal(-1)[:j]
        below = torch.cat([torch.zeros(1, dtype=torch.float64), betas[:-1] * current[: j - 1]])
        grown = (
            betas * current[1 : j + 1]
            + (alphas[k] - alphas[j]) * current[:j]
            + below
            - betas[j - 1] * previous[:j]
        )
        new[:j] = (grown + torch.sign(grown) * error) / beta
    new[j] = error / beta
    new[j + 1] = 1.0
    state.omega_previous, state.omega = current, new
    return float(new[: j + 1].abs().max())


def _check_finite(values: Tensor) -> None:
    # A nan or inf anywhere in an image reaches its diagonal, so checking that suffices.
    if not bool(torch.isfinite(values).all()):
        raise NonFiniteError("the operator returned non-finite values (nan or inf); check matvec.")


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
    eigenvectors = state.basis.combine(vectors[:, chosen].T)
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
