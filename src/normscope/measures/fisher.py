"""Fisher information spectrum, trace and sample-gradient norms (karakida2019).

All three work through the factorization ``F = A^T A``, ``A = M J`` of
:mod:`normscope.curvature.gram`: ``J`` is the whole-batch output Jacobian (correct with
batch norm in train mode, where each output depends on the whole batch; with
``batch_size`` set each mini-batch is its own function and ``J`` stacks their
Jacobians), and the kinds are

- ``"true"``: ``F = (1/N) J^T Q J``, ``Q`` block diagonal with the loss Hessian in the
  outputs per sample (``diag(p) - p p^T`` for cross-entropy, ``I`` for ``mse``, where
  ``F = (1/T) sum_t sum_k grad f_k(x_t) grad f_k(x_t)^T`` as in karakida2019: labels do
  not enter);
- ``"ntk"``: ``F = (1/N) J^T J`` whatever the loss (the same as ``"true"`` for ``mse``);
- ``"empirical"``: ``F = (1/N) sum_i g_i g_i^T`` with ``g_i`` the gradient of sample
  ``i``'s loss under the whole-batch function.

The non-zero eigenvalues of ``F`` are those of the dual Gram ``A A^T`` (``N C x N C``, or
``N x N`` for the empirical Fisher), so no ``P x P`` matrix is ever formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from normscope.curvature.gram import (
    DEFAULT_MAX_MEMORY_MB,
    KINDS,
    FisherFactor,
    build_gram,
    hutchinson_traces,
    vectors_per_chunk,
)
from normscope.linalg.lanczos import lanczos
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import COUNT, POSITIVE, SEED, TOL, Choice, Integer, Optional
from normscope.measures.registry import register
from normscope.subject import Subject

DEFAULT_MAX_GRAM_SIZE = 4096
# the mean-gradient overlaps cost one vjp per output of a loss term (a classifier's C)
MAX_OVERLAP_OUTPUTS = 256


@dataclass(frozen=True)
class _Spectrum:
    """What a spectrum path found: statistics, top Fisher eigenvectors, diag(F), notes."""

    path: str
    stats: dict[str, object]
    eigenvectors: Tensor
    fisher_diagonal: Tensor
    notes: list[str]


def _layer_shares(subject: Subject, fisher_diagonal: Tensor) -> dict[str, object]:
    """``tr F`` restricted to each module's parameters, divided by ``tr F``."""
    total = float(fisher_diagonal.sum())
    names, shares = [], []
    for group in subject.param_groups():
        part = sum(float(fisher_diagonal[subject.layout.slice(n)].sum()) for n in group.params)
        names.append(group.name or "(root)")
        shares.append(part / total if total > 0 else math.nan)
    return {"layer_names": names, "layer_shares": np.array(shares)}


def _mean_gradient_basis(factor: FisherFactor, seed: int) -> Tensor:
    """Orthonormal rows spanning the per-class mean output gradients ``(1/c) sum_m grad f_k``.

    Directions whose singular value is below ``sqrt(eps)`` times the root-mean-square row
    norm of ``J`` (estimated from one Rademacher probe) are rounding noise and dropped:
    with the outputs centred over the batch the mean gradients vanish identically.
    """
    means = factor.mean_output_gradients()
    gen = torch.Generator().manual_seed(seed)
    d = factor.jacobian.out_dim
    z = torch.randint(0, 2, (1, d), generator=gen).to(means) * 2 - 1
    row_scale = float(factor.jacobian.vjp_batched(z).norm()) / math.sqrt(d)
    _, values, rows = torch.linalg.svd(means, full_matrices=False)
    keep = values > torch.finfo(means.dtype).eps ** 0.5 * row_scale
    return rows[keep]


def _overlaps(vectors: Tensor, basis: Tensor) -> np.ndarray:
    """``||Proj_span(basis) v||^2 / ||v||^2`` for each row ``v``."""
    if basis.shape[0] == 0:
        return np.zeros(vectors.shape[0])
    inside = (vectors @ basis.T).pow(2).sum(dim=1)
    return (inside / vectors.pow(2).sum(dim=1)).double().cpu().numpy()


def _top_eigenvectors(factor: FisherFactor, values: Tensor, gram_vectors: Tensor) -> Tensor:
    """Fisher eigenvectors ``v = A^T u / sqrt(lambda)`` (rows) from Gram eigenvectors ``u``."""
    return factor.transpose_apply(gram_vectors) / values.sqrt().unsqueeze(1)


def _nonzero(values: Tensor, size: int) -> Tensor:
    """Eigenvalues above the numerical rank threshold ``size * eps * lambda_max``."""
    top = float(values.max()) if values.numel() else 0.0
    return values[values > size * torch.finfo(values.dtype).eps * top]


def _dense_spectrum(factor: FisherFactor, k: int, max_memory_mb: float) -> _Spectrum:
    built = build_gram(factor, max_memory_mb=max_memory_mb)
    values, vectors = torch.linalg.eigh(built.gram)
    order = torch.argsort(values, descending=True)
    values, vectors = values[order], vectors[:, order]
    nonzero = _nonzero(values, factor.num_rows)
    top = min(k, nonzero.numel())
    p = factor.num_params
    stats = {
        "eigenvalues": nonzero.double().cpu().numpy(),
        "rank": int(nonzero.numel()),
        "trace": float(built.gram.diagonal().sum()),
        "mean": float(built.gram.diagonal().sum()) / p,
        "second_moment": float(built.gram.pow(2).sum()) / p,
    }
    eigvecs = _top_eigenvectors(factor, values[:top], vectors[:, :top].T)
    notes = [
        f"path: {built.path} (Gram {factor.num_rows}x{factor.num_rows} in batches of "
        f"{built.chunk} products; exact statistics)"
    ]
    return _Spectrum(built.path, stats, eigvecs, built.fisher_diagonal, notes)


def _lanczos_spectrum(
    factor: FisherFactor, k: int, tol: float, num_probes: int, seed: int, max_memory_mb: float
) -> _Spectrum:
    # Lanczos in the smaller of the Gram space (r) and the parameter space (P): the
    # nonzero spectra of A A^T and A^T A agree, and a language model's r = terms x vocab
    # can dwarf P
    r, p = factor.num_rows, factor.num_params
    in_gram = r <= p
    dim = r if in_gram else p
    matmat = factor.gram_apply if in_gram else factor.fisher_apply
    k = min(k, dim)
    result = lanczos(
        lambda w: matmat(w.unsqueeze(0))[0],
        dim,
        k=k,
        which="largest",
        tol=tol,
        block_size=k,
        matmat=matmat,
        seed=seed,
        dtype=factor.dtype,
        device=factor.device,
    )
    order = torch.argsort(result.eigenvalues, descending=True)
    values, vectors = result.eigenvalues[order], result.eigenvectors[order]
    positive = values > 0
    if in_gram:
        eigvecs = _top_eigenvectors(factor, values[positive], vectors[positive])
    else:
        eigvecs = vectors[positive]
    rest = hutchinson_traces(
        factor,
        num_probes,
        seed + 1,
        chunk=vectors_per_chunk(factor, max_memory_mb),
        deflate=vectors,
        space="gram" if in_gram else "params",
    )
    trace = float(values.sum()) + rest.trace
    stats = {
        "eigenvalues": values.double().cpu().numpy(),
        "residuals": result.residuals[order].double().cpu().numpy(),
        "lanczos_converged": bool(result.converged),
        "trace": trace,
        "mean": trace / p,
        "mean_stderr": rest.trace_stderr / p,
        "second_moment": (float(values.pow(2).sum()) + rest.trace_of_square) / p,
        "second_moment_stderr": rest.trace_of_square_stderr / p,
    }
    notes = [
        f"path: lanczos (Gram size {r} > max_gram_size; top {k} eigenvalues by block "
        f"Lanczos in the {'Gram' if in_gram else 'parameter'} space, {result.num_matvecs} "
        "products)",
        f"mean, second moment and layer shares: top {k} eigenpairs exactly plus Hutchinson "
        f"with {num_probes} Rademacher probes on the rest (standard errors in details)",
    ]
    if not result.converged:
        notes.append(f"Lanczos did not reach tol={tol} in {result.iterations} steps")
    top_diagonal = (values[positive].unsqueeze(1) * eigvecs.pow(2)).sum(dim=0)
    return _Spectrum("lanczos", stats, eigvecs, top_diagonal + rest.fisher_diagonal, notes)


@register(
    "fisher_spectrum",
    family="fisher",
    paper="karakida2019",
    sharded=True,
    quick={"k": 3},
    derives=("k",),
    options={
        "kind": Choice(KINDS),
        "k": Optional(COUNT),
        "max_memory_mb": POSITIVE,
        "max_gram_size": COUNT,
        "tol": TOL,
        "num_probes": Integer(low=2),
        "seed": SEED,
    },
)
def fisher_spectrum(
    subject: Subject,
    *,
    kind: str = "true",
    k: int | None = None,
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
    max_gram_size: int = DEFAULT_MAX_GRAM_SIZE,
    tol: float = 1e-6,
    num_probes: int = 30,
    seed: int = 0,
) -> Measurement:
    """Largest Fisher eigenvalue ``lambda_max(F)`` from the dual Gram matrix (karakida2019).

    ``F = A^T A`` as in the module docstring (``kind`` = ``"true"``, ``"empirical"`` or
    ``"ntk"``); its non-zero eigenvalues are those of the dual Gram ``A A^T`` (``r x r``,
    ``r = N C``, or ``N`` for ``"empirical"``). Details: ``eigenvalues`` (all non-zero ones,
    descending; the top ``k`` on the Lanczos path), ``mean`` ``m = tr F / P``,
    ``second_moment`` ``s = sum lambda^2 / P`` (``P`` = number of parameters),
    ``mean_gradient_overlap`` (for each of the top ``k`` unit eigenvectors
    ``v = A^T u / sqrt(lambda)``, the fraction ``||Proj v||^2`` of it in the span of the
    per-class mean output gradients ``(1/N) sum_i grad f_k(x_i)``, karakida2019's outlier
    directions; 0 when those gradients vanish, e.g. outputs centred by batch norm), and
    ``layer_shares`` (``tr F`` restricted to each module's parameters over ``tr F``).

    Paths (named in the notes): ``"dense-jacobian"`` when ``A`` (``r x P``) fits in half of
    ``max_memory_mb``, else ``"chunked-gram"`` (Gram rows from batched vjps then jvps,
    ``A`` never held), both with an exact dense eigendecomposition; ``"lanczos"`` when
    ``r > max_gram_size`` (default 4096, where a dense ``eigh`` takes seconds to a minute):
    block Lanczos with block size ``k`` on ``w -> A (A^T w)`` for the top ``k`` eigenvalues
    (``tol`` relative residual), mean / second moment / layer shares by Hutchinson with
    ``num_probes`` probes.

    Args:
        kind: which Fisher (module docstring).
        k: top eigenpairs for the overlaps and the Lanczos path; default ``C`` (the
            outputs), the multiplicity of the outlier eigenvalue in karakida2019.
        max_memory_mb: memory budget for Jacobian rows and batched products.
        max_gram_size: largest Gram size decomposed densely.
        tol: Lanczos residual tolerance (eigenvalue error about ``tol^2``).
        num_probes: Hutchinson probes on the Lanczos path.
        seed: seeds the Lanczos start, the probes and the row-scale probe.
    """
    meter = CostMeter()
    factor = FisherFactor(subject, kind, meter)
    k = subject.num_outputs if k is None else k
    if factor.num_rows > max_gram_size:
        found = _lanczos_spectrum(factor, k, tol, num_probes, seed, max_memory_mb)
    else:
        found = _dense_spectrum(factor, k, max_memory_mb)
    notes = list(found.notes)
    width = factor.term_views()[0].width
    if width <= MAX_OVERLAP_OUTPUTS:
        overlaps = _overlaps(found.eigenvectors, _mean_gradient_basis(factor, seed))
        if overlaps.size and not overlaps.any():
            notes.append("mean output gradients vanish (outputs centred over the batch): overlap 0")
    else:
        overlaps = np.full(found.eigenvectors.shape[0], np.nan)
        notes.append(
            f"mean_gradient_overlap not computed: {width} outputs per loss term would take "
            f"{width} extra products (limit {MAX_OVERLAP_OUTPUTS})"
        )
    eigenvalues = found.stats["eigenvalues"]
    details = {
        **found.stats,
        "num_params": subject.num_params,
        "gram_size": factor.num_rows,
        "mean_gradient_overlap": overlaps,
        **_layer_shares(subject, found.fisher_diagonal),
    }
    settings = {"k": k, "path": found.path}
    value = float(eigenvalues[0]) if len(eigenvalues) else 0.0
    return Measurement("fisher_spectrum", value, details, meter.cost(), settings, notes)


@register(
    "fisher_trace",
    family="fisher",
    paper="karakida2019",
    sharded=True,
    options={
        "kind": Choice(KINDS),
        "num_probes": Optional(Integer(low=2)),
        "max_memory_mb": POSITIVE,
        "seed": SEED,
    },
)
def fisher_trace(
    subject: Subject,
    *,
    kind: str = "true",
    num_probes: int | None = None,
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
    seed: int = 0,
) -> Measurement:
    """Mean Fisher eigenvalue ``m = tr F / P`` (karakida2019's ``m_lambda``).

    ``P`` is the number of measured parameters, ``F`` as in the module docstring. Exact by
    default: ``tr F = sum_rows ||A_row||^2`` from ``r`` batched vjps (``r = N C``, or ``N``
    for ``"empirical"``), never forming the Gram. With ``num_probes`` set, Hutchinson's
    estimate ``E ||A^T z||^2`` from that many vjps (Rademacher ``z``), with its standard
    error. Details: ``trace`` (``tr F``), ``num_params``, ``layer_shares`` as in
    :func:`fisher_spectrum`.
    """
    meter = CostMeter()
    factor = FisherFactor(subject, kind, meter)
    chunk = vectors_per_chunk(factor, max_memory_mb)
    details: dict[str, object] = {"num_params": subject.num_params}
    if num_probes is None:
        diagonal = _exact_fisher_diagonal(factor, chunk)
        trace = float(diagonal.sum())
        notes = [f"exact: squared norms of {factor.num_rows} rows of A"]
    else:
        est = hutchinson_traces(factor, num_probes, seed, squares=False, chunk=chunk)
        diagonal, trace = est.fisher_diagonal, est.trace
        details["mean_stderr"] = est.trace_stderr / subject.num_params
        notes = [f"Hutchinson with {num_probes} Rademacher probes"]
    details |= {"trace": trace, **_layer_shares(subject, diagonal)}
    return Measurement("fisher_trace", trace / subject.num_params, details, meter.cost(), {}, notes)


def _exact_fisher_diagonal(factor: FisherFactor, chunk: int) -> Tensor:
    """``diag(F) = sum_rows A_row ⊙ A_row`` from batched vjps on unit vectors."""
    r = factor.num_rows
    eye = torch.eye(r, dtype=factor.dtype, device=factor.device)
    return sum(
        factor.transpose_apply(eye[i : i + chunk]).pow(2).sum(dim=0) for i in range(0, r, chunk)
    )


@register(
    "sample_gradient_norms",
    family="fisher",
    paper="karakida2019",
    sharded=True,
    options={"max_memory_mb": POSITIVE},
)
def sample_gradient_norms(
    subject: Subject, *, max_memory_mb: float = DEFAULT_MAX_MEMORY_MB
) -> Measurement:
    """Mean per-term gradient norm ``(1/c) sum_m ||g_m||`` of the whole-batch function.

    ``g_m = grad_theta l(f_m(theta; X), y_m)``: the loss of term ``m`` (a sample; a token
    for a language model's ``(n, T)`` labels), with every output taken from the
    whole-batch function (so with batch norm in train mode ``g_m`` sees the other samples
    through the batch statistics), ``(1/c) sum_m g_m = grad L``. These are the rows of the
    empirical Fisher's factor (karakida2019). Details: ``norms`` (all ``c``), ``std``,
    ``min``, ``median``, ``max``, and ``mean_gradient_norm`` ``||grad L||``.
    """
    meter = CostMeter()
    factor = FisherFactor(subject, "empirical", meter)
    n = factor.num_rows
    chunk = vectors_per_chunk(factor, max_memory_mb)
    eye = torch.eye(n, dtype=factor.dtype, device=factor.device)
    norms = []
    total = torch.zeros(subject.num_params, dtype=factor.dtype, device=subject.device)
    for i in range(0, n, chunk):
        grads = factor.transpose_apply(eye[i : i + chunk]) * math.sqrt(n)
        norms.append(grads.norm(dim=1))
        total += grads.sum(dim=0)
    values = torch.cat(norms).double().cpu().numpy()
    details = {
        "norms": values,
        "std": float(values.std()),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
        "mean_gradient_norm": float(total.norm()) / n,
    }
    return Measurement("sample_gradient_norms", float(values.mean()), details, meter.cost())
