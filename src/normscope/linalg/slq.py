"""Spectral density by stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017, "Fast
estimation of tr(f(A)) via stochastic Lanczos quadrature", SIMAX; ubaru2017; used for
network Hessians by Ghorbani, Krishnan, Xiao 2019, "An investigation into neural net
optimization via Hessian eigenvalue density", ICML; ghorbani2019).

The spectral density of a symmetric ``A`` (dimension ``n``, eigenvalues ``lambda_k``) is
``phi(t) = (1/n) sum_k delta(t - lambda_k)``. For a unit probe ``v = z / ||z||`` with
Rademacher ``z``, ``m`` Lanczos steps from ``v`` give a tridiagonal ``T_m`` with eigenpairs
``(theta_j, u_j)``; Gauss quadrature turns the spectral measure of ``v`` into ``m`` nodes
``theta_j`` with weights ``w_j = (e_1^T u_j)^2`` (summing to 1), exact for polynomials of
degree up to ``2m - 1``:

    v^T f(A) v = sum_j w_j f(theta_j)   and   tr f(A) ~ (n / N) sum_i sum_j w_ij f(theta_ij)

over ``N`` probes (:func:`slq_trace`). Smoothing every node with a Gaussian of width
``sigma`` gives the density estimate (:func:`density_on_grid`)

    phi_sigma(t) = (1/N) sum_i sum_j w_ij N(t; theta_ij, sigma^2),

which integrates to 1. Against :func:`lanczos`, SLQ resolves the whole spectrum (bulk and
outliers) at the cost of a few independent Krylov runs; against Hutchinson on the
moments ``tr(A^p)``, one run gives every ``tr f(A)`` for smooth ``f`` at once.

Each probe's Lanczos run keeps its basis and reorthogonalizes fully (two Gram-Schmidt
passes), so no ghost copies of outliers distort the weights. A probe whose Krylov space
becomes invariant (``beta ~ 0``) stops early: its quadrature is then exact, and its unused
node slots repeat its last node with weight 0. With ``matmat``, all probes advance together
as one block of products (memory ``num_probes * num_steps * dim`` for the bases); without
it, probes run one after the other (memory ``num_steps * dim``). Reorthogonalization reads
the stored basis four times per step, about ``2 num_steps^2 dim`` numbers per probe: for
cheap operators at large ``dim`` it, not the products, sets the run time (e.g. ~1 s per
probe at dim 1e5 and 64 steps on one CPU core), so lower ``num_steps`` there.

Example:
    >>> import torch
    >>> from normscope.linalg import density_on_grid, slq, slq_trace
    >>> a = torch.diag(torch.linspace(0.0, 1.0, 100, dtype=torch.float64))
    >>> result = slq(lambda v: a @ v, 100, num_probes=4, num_steps=20, dtype=torch.float64)
    >>> round(slq_trace(result, lambda t: t).estimate, 6)  # Rademacher: z^T D z = tr D
    50.0
    >>> density = density_on_grid(result)
    >>> round(float(torch.trapezoid(density.density, density.grid)), 4)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from normscope.errors import NonFiniteError
from normscope.linalg._space import (
    CountedOperator,
    Matmat,
    Matvec,
    Seed,
    check_positive_float,
    check_positive_int,
    make_generator,
    rademacher,
    resolve_space,
)
from normscope.linalg.hutchinson import TraceEstimate, mean_and_error


@dataclass(frozen=True)
class SLQResult:
    """Quadrature ``nodes`` and ``weights`` ``(num_probes, num_steps)`` (each weight row sums
    to 1), the Lanczos steps each probe used, the operator's dimension, and the cost."""

    nodes: Tensor
    weights: Tensor
    steps: Tensor
    dim: int
    num_matvecs: int


@dataclass(frozen=True)
class SpectralDensity:
    """A smoothed spectral density ``density`` on ``grid`` with kernel width ``sigma``."""

    grid: Tensor
    density: Tensor
    sigma: float


def slq(
    matvec: Matvec,
    dim: int | Tensor,
    *,
    num_probes: int = 8,
    num_steps: int = 64,
    matmat: Matmat | None = None,
    seed: Seed = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SLQResult:
    """Gauss quadrature nodes and weights of the spectral measure (module docstring).

    Args:
        matvec: ``v (dim,) -> A v (dim,)``; ``A`` symmetric.
        dim: the dimension, or an example tensor giving dim, dtype and device.
        num_probes: Rademacher probes; the spread of ``tr f(A)`` falls like
            ``1/sqrt(num_probes)``, and in high dimension each probe already averages over
            the spectrum (ubaru2017, Thm 4.1), so 8 suffice for a density.
        num_steps: Lanczos steps per probe (at most ``dim``); 64 resolves isolated outliers
            as single nodes and the bulk to about ``range / 64`` before smoothing.
        matmat: optional ``V (num_probes, dim) -> A V``; then all probes advance together.
        seed: int or ``torch.Generator`` for the probes.
        dtype, device: of the vectors (default: from an example tensor, else torch's
            default dtype on CPU).
    """
    space = resolve_space(dim, dtype, device)
    num_probes = check_positive_int("num_probes", num_probes)
    num_steps = min(check_positive_int("num_steps", num_steps), space.dim)
    probes = rademacher(space, num_probes, make_generator(seed))
    op = CountedOperator(matvec, matmat, space)
    groups = [probes] if matmat is not None else list(probes.split(1))
    runs = [_batched_lanczos(op, group, num_steps) for group in groups]
    alphas = torch.cat([run[0] for run in runs])
    betas = torch.cat([run[1] for run in runs])
    steps = torch.cat([run[2] for run in runs])
    nodes, weights = _gauss_quadrature(alphas, betas, steps)
    as_output = {"dtype": space.dtype, "device": space.device}
    return SLQResult(
        nodes.to(**as_output), weights.to(**as_output), steps, space.dim, op.num_matvecs
    )


def _batched_lanczos(
    op: CountedOperator, probes: Tensor, num_steps: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Independent Lanczos runs from each row of ``probes``, advanced as one block.

    Returns float64 CPU ``alphas (p, m)``, ``betas (p, m)`` (``betas[:, j]`` couples steps
    ``j`` and ``j + 1``) and the number of steps each run took.
    """
    p, dim = probes.shape
    space = op.space
    basis = probes.new_empty((p, num_steps, dim))
    block = probes / probes.norm(dim=1, keepdim=True)
    alphas = torch.zeros((p, num_steps), dtype=torch.float64)
    betas = torch.zeros((p, num_steps), dtype=torch.float64)
    steps = torch.zeros(p, dtype=torch.long)
    active = torch.ones(p, dtype=torch.bool)
    scale = torch.zeros(p, dtype=torch.float64)
    for j in range(num_steps):
        basis[:, j] = block
        image = torch.zeros_like(block)
        image[active.to(block.device)] = op(block[active.to(block.device)])
        # Accumulated in float64: these entries define the quadrature. A nan or inf
        # anywhere in the image makes its alpha non-finite, so checking alphas suffices.
        alphas[:, j] = (block.double() * image.double()).sum(dim=1).cpu()
        if not bool(torch.isfinite(alphas[:, j]).all()):
            raise NonFiniteError(
                "the operator returned non-finite values (nan or inf); check matvec."
            )
        scale = torch.maximum(scale, image.norm(dim=1).double().cpu())
        steps += active.long()
        residual = _project_out(image, basis[:, : j + 1])
        norms = residual.double().norm(dim=1).cpu()
        betas[:, j] = norms
        active &= norms > space.eps**0.75 * scale
        if j + 1 == num_steps or not bool(active.any()):
            break
        divisor = torch.where(active, norms, torch.ones_like(norms)).to(residual)
        block = torch.where(active.to(block.device).unsqueeze(1), residual / divisor[:, None], 0)
    return alphas, betas, steps


def _project_out(block: Tensor, bases: Tensor) -> Tensor:
    """Two classical Gram-Schmidt passes of each row against its own basis ``(p, j, dim)``."""
    # Matrix-vector products per probe beat one bmm here (bmm transposes the basis).
    rows = []
    for basis, row in zip(bases, block, strict=True):
        for _ in range(2):
            row = row - (basis @ row) @ basis
        rows.append(row)
    return torch.stack(rows)


def _gauss_quadrature(alphas: Tensor, betas: Tensor, steps: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes and weights per probe from its tridiagonal matrix, padded to ``num_steps``."""
    p, m = alphas.shape
    nodes = torch.zeros((p, m), dtype=torch.float64)
    weights = torch.zeros((p, m), dtype=torch.float64)
    for i in range(p):
        s = int(steps[i])
        off = betas[i, : s - 1]
        tridiagonal = torch.diag(alphas[i, :s]) + torch.diag(off, 1) + torch.diag(off, -1)
        theta, vectors = torch.linalg.eigh(tridiagonal)
        nodes[i, :s], nodes[i, s:] = theta, theta[-1]
        weights[i, :s] = vectors[0] ** 2
    return nodes, weights


def slq_trace(result: SLQResult, f: Callable[[Tensor], Tensor]) -> TraceEstimate:
    """Estimate ``tr f(A)`` as ``n * mean_i sum_j w_ij f(theta_ij)`` with its standard error.

    ``f`` maps a float64 tensor of nodes elementwise (e.g. ``torch.log``, ``lambda t: t**2``).
    The standard error is ``n`` times the spread over probes divided by
    ``sqrt(num_probes)`` (nan for a single probe).
    """
    nodes, weights = result.nodes.double().cpu(), result.weights.double().cpu()
    per_probe = (weights * f(nodes)).sum(dim=1) * result.dim
    estimate, error = mean_and_error(per_probe)
    return TraceEstimate(estimate, error, result.num_matvecs, nodes.shape[0])


def density_on_grid(
    result: SLQResult,
    grid: Tensor | None = None,
    *,
    sigma: float | None = None,
    num_points: int = 1000,
) -> SpectralDensity:
    """The Gaussian-smoothed density ``phi_sigma`` (module docstring) on a grid.

    Args:
        result: output of :func:`slq`.
        grid: points ``t`` to evaluate at; default ``num_points`` evenly spaced points from
            ``min(theta) - 5 sigma`` to ``max(theta) + 5 sigma``, so the density integrates to
            1 within ~1e-6 (the Gaussian tails beyond 5 sigma).
        sigma: kernel width; default 1 % of the node range (ghorbani2019 smooth at a similar
            fraction of the normalized spectrum), enough to merge the bulk's nodes into
            a curve while outliers stay separate peaks. For a single point spectrum it is
            1 % of its magnitude (0.01 for the zero operator).
        num_points: grid size when ``grid`` is not given.
    """
    nodes, weights = result.nodes.double(), result.weights.double()
    low, high = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.01 * (high - low if high > low else max(abs(low), abs(high)) or 1.0)
    sigma = check_positive_float("sigma", sigma)
    if grid is None:
        num_points = check_positive_int("num_points", num_points)
        grid = torch.linspace(low - 5 * sigma, high + 5 * sigma, num_points, dtype=torch.float64)
    points = grid.to(device=nodes.device, dtype=torch.float64).reshape(-1, 1)
    kernel = torch.exp(-0.5 * ((points - nodes.reshape(1, -1)) / sigma) ** 2)
    density = kernel @ weights.reshape(-1) / (nodes.shape[0] * sigma * math.sqrt(2 * math.pi))
    as_output = {"dtype": result.nodes.dtype, "device": result.nodes.device}
    return SpectralDensity(points.reshape(-1).to(**as_output), density.to(**as_output), sigma)
