"""The dual Gram matrix of a Fisher-type matrix, built from whole-batch Jacobian products.

Every Fisher-type matrix normscope measures (karakida2019) factors as ``F = A^T A`` with
``A = M J`` (``r x P``): ``J`` the whole-batch output Jacobian (``D x P``, see
:class:`~normscope.curvature.jacobian.OutputJacobian`) and ``M`` block diagonal over
batches, ``M_b = sqrt(w_b) M_b'`` with ``w_b = c_b / c`` the batch's share of the counted
loss terms and ``M_b'`` the loss's output-space factor
(:meth:`normscope.losses.Loss.fisher_factor`):

- ``"ggn"``: ``M_b'^T M_b' = Lambda_b``, the output Hessian of the batch loss, so
  ``F = sum_b w_b J_b^T Lambda_b J_b`` is the generalized Gauss-Newton matrix. For
  cross-entropy ``Lambda_b = (1/c_b) sum_m (diag(p_m) - p_m p_m^T)`` over the counted
  terms, for ``mse`` ``I / n_b``;
- ``"true"``: the same matrix, named for what it is for losses with a likelihood
  (cross-entropy, mse): the Fisher information of the model's predictive distribution,
  ``F = (1/c) sum_m J_m^T Q_m J_m``. A callable loss has no likelihood and is refused;
- ``"empirical"``: one row ``r_m^T / sqrt(c)`` per counted term, ``r_m = d l_m / d f_m``,
  so the rows of ``sqrt(c) A`` are the term gradients ``g_m = J_m^T r_m`` of the
  whole-batch function and ``F = (1/c) sum_m g_m g_m^T``;
- ``"ntk"``: ``F = (1/c) sum_m J_m^T J_m`` whatever the loss.

The non-zero eigenvalues of ``F`` (``P x P``) are those of the dual Gram ``A A^T``
(``r x r``), and a Gram eigenvector ``u`` with eigenvalue ``lambda > 0`` maps to the unit
Fisher eigenvector ``v = A^T u / sqrt(lambda)``. With batch norm in train mode ``J`` is the
Jacobian of the whole-batch function (samples are coupled).

Under a process group (:mod:`normscope.distributed`) the ``r`` rows of ``A`` are every
rank's rows, rank after rank: ``A^T w`` is summed over the ranks (each computing its
own rows' part) and ``A v`` is gathered, so every rank holds the same vectors.

Example:
    >>> import torch
    >>> from normscope import Subject
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
    ...                             torch.nn.Linear(5, 2)).double()
    >>> x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1])
    >>> factor = FisherFactor(Subject(model, (x, y)), kind="true")
    >>> built = build_gram(factor)
    >>> built.gram.shape, built.path
    (torch.Size([8, 8]), 'dense-jacobian')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from normscope.curvature.jacobian import OutputJacobian
from normscope.errors import ConfigError, NonFiniteError, unknown_name
from normscope.losses import FISHER_KINDS, OutputFactor, TermView
from normscope.measurement import CostMeter
from normscope.subject import Subject

KINDS = FISHER_KINDS
DEFAULT_MAX_MEMORY_MB = 1024.0


class FisherFactor:
    """``A = M J`` with ``F = A^T A`` for one Fisher ``kind`` (module docstring).

    ``transpose_apply(W)`` gives ``A^T w`` for every row ``w`` of ``W (k, r)`` (``k`` batched
    vjps), ``apply(V)`` gives ``A v`` for every row of ``V (k, P)`` (``k`` batched jvps).
    Vectors live in the Subject's working dtype.
    """

    def __init__(self, subject: Subject, kind: str = "true", meter: CostMeter | None = None):
        if kind not in KINDS:
            raise unknown_name("Fisher kind", kind, KINDS)
        subject.require_targets(f"the {kind} Fisher")
        self.subject = subject
        self.kind = kind
        self.jacobian = OutputJacobian(subject, meter)
        self.meter = self.jacobian.meter
        self.dtype = subject.work_dtype
        self.device = subject.device
        if not self.jacobian.outputs_finite:
            raise NonFiniteError(
                "the network's outputs are not finite (NaN or inf: the forward pass "
                "overflowed), so the Fisher is not defined"
            )
        loss = subject.loss_fn
        self.factors: list[tuple[float, OutputFactor]] = [
            (math.sqrt(p.weight), loss.fisher_factor(p.outputs.to(self.dtype), p.targets, kind))
            for p in self.jacobian.parts
        ]
        local = sum(f.rows for _, f in self.factors)
        group = subject.group
        self.row_sizes = [local] if group is None else group.sizes(local)

    @property
    def num_rows(self) -> int:
        """``r``: the size of the dual Gram matrix (over every rank's batches)."""
        return sum(self.row_sizes)

    @property
    def num_params(self) -> int:
        return self.subject.num_params

    def transpose_apply(self, w: Tensor) -> Tensor:
        """``A^T w`` for each row of ``w (k, r)``: ``(k, P)``."""
        group = self.subject.group
        w = w.to(self.dtype)
        local = w if group is None else group.columns(w, self.row_sizes)
        pieces = torch.split(local, [f.rows for _, f in self.factors], dim=1)
        us = [s * f.transpose(piece) for (s, f), piece in zip(self.factors, pieces, strict=True)]
        return self.jacobian.vjp_parts(us)

    def apply(self, v: Tensor) -> Tensor:
        """``A v`` for each row of ``v (k, P)``: ``(k, r)``."""
        tangents = self.jacobian.jvp_parts(v.to(self.dtype))
        rows = [s * f.apply(t) for (s, f), t in zip(self.factors, tangents, strict=True)]
        local = torch.cat(rows, dim=1)
        group = self.subject.group
        return local if group is None else group.concat(local, self.row_sizes)

    def gram_apply(self, w: Tensor) -> Tensor:
        """``A A^T w`` for each row of ``w (k, r)``: the dual Gram operator."""
        return self.apply(self.transpose_apply(w))

    def fisher_apply(self, v: Tensor) -> Tensor:
        """``A^T A v`` for each row of ``v (k, P)``: ``F`` itself."""
        return self.transpose_apply(self.apply(v))

    def term_views(self) -> list[TermView]:
        """Where the counted loss terms sit in every batch's outputs."""
        loss = self.subject.loss_fn
        return [loss.terms(p.outputs, p.targets) for p in self.jacobian.parts]

    def mean_output_gradients(self) -> Tensor:
        """``(1/c) sum_m grad_theta f_{m,k}`` for every output ``k`` of a term: ``(C, P)``."""
        views = self.term_views()
        width = views[0].width
        eye = torch.eye(width, dtype=self.dtype, device=self.device)
        us = []
        for view in views:
            ones = eye.unsqueeze(1).expand(width, view.num_terms, width)
            us.append(view.scatter(ones) / self.subject.num_terms)
        return self.jacobian.vjp_parts(us)


@dataclass(frozen=True)
class GramBuild:
    """The dual Gram ``A A^T`` (``r x r``), ``diag(F)`` (``P``), the path and chunk size."""

    gram: Tensor
    fisher_diagonal: Tensor
    path: str
    chunk: int


def vectors_per_chunk(factor: FisherFactor, max_memory_mb: float) -> int:
    """How many vjps / jvps to batch so that one batch stays within half of the budget.

    A batched product holds, per vector, about three parameter- or activation-sized
    buffers (the result, the tangents of the activations and autograd's workspace); the
    activations are estimated as the elements of every module output on the first batch.
    """
    per_vector = factor.num_params + _activation_elements(factor.subject)
    itemsize = torch.finfo(factor.subject.dtype).bits // 8
    fit = int(_budget_bytes(max_memory_mb) / 2 // (3 * itemsize * per_vector))
    return max(1, min(factor.num_rows, fit))


def _budget_bytes(max_memory_mb: float) -> float:
    if not max_memory_mb > 0:
        raise ConfigError(f"max_memory_mb must be positive, got {max_memory_mb!r}.")
    return max_memory_mb * 2**20


def _activation_elements(subject: Subject) -> int:
    """Elements of all leaf-module outputs in one forward pass of the first batch."""
    counted = [0]

    def count(_module, _inputs, output) -> None:
        if isinstance(output, Tensor):
            counted[0] += output.numel()

    leaves = [m for m in subject.model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            subject.output(subject.theta, subject.first_batch().inputs)
    finally:
        for h in handles:
            h.remove()
    # ranks must batch the same number of products: the largest first batch decides
    group = subject.group
    return counted[0] if group is None else group.maximum(counted[0])


def fits_dense(factor: FisherFactor, max_memory_mb: float) -> bool:
    """Whether ``A`` (``r x P``) fits in half of the memory budget."""
    itemsize = torch.finfo(factor.dtype).bits // 8
    return factor.num_rows * factor.num_params * itemsize <= _budget_bytes(max_memory_mb) / 2


def build_gram(
    factor: FisherFactor, *, max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, dense: bool | None = None
) -> GramBuild:
    """The dual Gram ``A A^T`` and ``diag(F)``, by the cheapest path that fits the budget.

    ``"dense-jacobian"`` forms ``A`` (``r`` vjps in batches) and multiplies;
    ``"chunked-gram"`` never holds ``A``: for each batch ``c`` of rows it forms
    ``A_c = (A^T E_c)^T`` by vjps and the Gram rows ``A A_c^T`` by jvps (``r`` vjps and
    ``r`` jvps in all). ``dense=None`` picks dense when ``A`` fits in half of
    ``max_memory_mb``; ``True`` / ``False`` force a path (for tests and benchmarks).
    """
    use_dense = fits_dense(factor, max_memory_mb) if dense is None else dense
    chunk = vectors_per_chunk(factor, max_memory_mb)
    r = factor.num_rows
    eye = torch.eye(r, dtype=factor.dtype, device=factor.device)
    diagonal = torch.zeros(factor.num_params, dtype=factor.dtype, device=factor.device)
    if use_dense:
        rows = torch.cat([factor.transpose_apply(eye[i : i + chunk]) for i in range(0, r, chunk)])
        return GramBuild(rows @ rows.T, rows.pow(2).sum(dim=0), "dense-jacobian", chunk)
    gram = torch.empty((r, r), dtype=factor.dtype, device=factor.device)
    for i in range(0, r, chunk):
        rows = factor.transpose_apply(eye[i : i + chunk])
        diagonal += rows.pow(2).sum(dim=0)
        gram[i : i + chunk] = factor.apply(rows)
    return GramBuild((gram + gram.T) / 2, diagonal, "chunked-gram", chunk)


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimates of ``tr F``, ``tr F^2`` and ``diag(F)``, with standard errors."""

    trace: float
    trace_stderr: float
    trace_of_square: float
    trace_of_square_stderr: float
    fisher_diagonal: Tensor


def hutchinson_traces(
    factor: FisherFactor,
    num_probes: int,
    seed: int,
    *,
    squares: bool = True,
    chunk: int = 8,
    deflate: Tensor | None = None,
    space: str = "gram",
) -> TraceEstimate:
    """Hutchinson's estimator (Hutchinson 1989) of the Fisher's traces, sharing products.

    ``space="gram"``: Rademacher ``z`` in the ``r``-dim Gram space; ``a = A^T z`` gives
    ``E ||a||^2 = tr F`` and ``E a ⊙ a = diag(F)`` from one vjp, and ``b = A a`` gives
    ``E ||b||^2 = sum lambda^2`` from one more jvp (skipped with ``squares=False``).
    ``space="params"``: ``z`` in the ``P``-dim parameter space; ``a = A z`` gives
    ``E ||a||^2 = tr F``, ``b = A^T a = F z`` gives ``E ||b||^2 = sum lambda^2`` and
    ``E z ⊙ b = diag(F)`` (the cheaper space is the smaller one).

    ``deflate`` (``(k, dim)``, orthonormal rows spanning an invariant subspace in the
    probes' space, e.g. converged top eigenvectors) projects the probes onto its
    complement, so the estimates cover only the rest of the spectrum. The caller adds the
    exact part of the deflated eigenpairs; removing the outliers removes most of the
    variance, the idea of Hutch++ (Meyer et al. 2021) with the sketch taken from Lanczos.
    """
    if num_probes < 2:
        raise ConfigError(f"num_probes must be at least 2 (for an error bar), got {num_probes}.")
    gram = space == "gram"
    dim = factor.num_rows if gram else factor.num_params
    gen = torch.Generator(device="cpu").manual_seed(seed)
    firsts, seconds = [], []
    diagonal = torch.zeros(factor.num_params, dtype=factor.dtype, device=factor.device)

    def project(t: Tensor) -> Tensor:
        return t if deflate is None else t - (t @ deflate.T) @ deflate

    for start in range(0, num_probes, chunk):
        k = min(chunk, num_probes - start)
        z = torch.randint(0, 2, (k, dim), generator=gen).to(factor.dtype).to(factor.device) * 2 - 1
        z = project(z)
        a = factor.transpose_apply(z) if gram else factor.apply(z)
        firsts.append(a.pow(2).sum(dim=1))
        if gram:
            diagonal += a.pow(2).sum(dim=0)
        if squares or not gram:
            b = project(factor.apply(a) if gram else factor.transpose_apply(a))
            seconds.append(b.pow(2).sum(dim=1))
            if not gram:
                diagonal += (z * b).sum(dim=0)
    first = torch.cat(firsts).double()
    second = torch.cat(seconds).double() if seconds else torch.full_like(first, float("nan"))
    root = num_probes**0.5
    return TraceEstimate(
        float(first.mean()),
        float(first.std() / root),
        float(second.mean()),
        float(second.std() / root),
        diagonal / num_probes,
    )
