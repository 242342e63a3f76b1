"""The dual Gram matrix of a Fisher-type matrix, built from whole-batch Jacobian products.

Every Fisher-type matrix normscope measures (karakida2019) factors as ``F = A^T A`` with
``A = M J`` (``r x P``): ``J`` the whole-batch output Jacobian (``N C x P``, rows sample
major, see :class:`~normscope.curvature.jacobian.OutputJacobian`) and ``M`` a block-diagonal
map on output space, one ``m x C`` block ``S_i`` per sample:

- ``"ntk"``: ``S_i = I_C / sqrt(N)``, so ``F = J^T J / N`` (``r = N C``);
- ``"true"``: ``S_i = Q_i^{1/2} / sqrt(N)`` with ``Q_i`` the Hessian of the sample loss in
  its outputs: ``diag(p_i) - p_i p_i^T`` for cross-entropy (symmetric square root), ``I``
  for ``mse``, so ``F = (1/N) J^T Q J`` (for ``mse`` the same as ``"ntk"``);
- ``"empirical"``: ``S_i = r_i^T / sqrt(N)`` (``m = 1``, ``r = N``) with
  ``r_i = d l_i / d f_i`` (``p_i - onehot(y_i)`` for cross-entropy, ``f_i - y_i`` for
  ``mse``), so the rows of ``sqrt(N) A`` are the sample gradients ``g_i = J_i^T r_i`` of
  the whole-batch function and ``F = (1/N) sum_i g_i g_i^T``.

The non-zero eigenvalues of ``F`` (``P x P``) are those of the dual Gram ``A A^T``
(``r x r``), and a Gram eigenvector ``u`` with eigenvalue ``lambda > 0`` maps to the unit
Fisher eigenvector ``v = A^T u / sqrt(lambda)``. With batch norm in train mode ``J`` is the
Jacobian of the whole-batch function (samples are coupled), and with ``batch_size`` set
each mini-batch is its own function and ``J`` stacks their Jacobians.

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

from dataclasses import dataclass

import torch
from torch import Tensor

from normscope.curvature.jacobian import OutputJacobian
from normscope.errors import ConfigError, NonFiniteError, unknown_name
from normscope.measurement import CostMeter
from normscope.subject import Subject

KINDS = ("true", "empirical", "ntk")
DEFAULT_MAX_MEMORY_MB = 1024.0


def output_blocks(subject: Subject, outputs: Tensor, kind: str) -> Tensor:
    """The blocks ``S_i`` of ``M`` as a tensor ``(N, m, C)`` (module docstring).

    ``outputs`` are the whole-batch outputs ``f(theta; X)`` of shape ``(N, C)``.
    """
    n, c = outputs.shape
    scale = n**-0.5
    if kind == "ntk" or (kind == "true" and subject.loss_name == "mse"):
        eye = torch.eye(c, dtype=outputs.dtype, device=outputs.device)
        return (scale * eye).expand(n, c, c)
    if kind == "true":
        return scale * _sqrt_psd(_softmax_hessians(outputs))
    if kind == "empirical":
        return scale * _output_residuals(subject, outputs).unsqueeze(1)
    raise unknown_name("Fisher kind", kind, KINDS)


def _softmax_hessians(outputs: Tensor) -> Tensor:
    p = torch.softmax(outputs, dim=1)
    return torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)


def _sqrt_psd(blocks: Tensor) -> Tensor:
    """Symmetric square roots of symmetric positive semi-definite blocks ``(N, C, C)``."""
    values, vectors = torch.linalg.eigh(blocks)
    return (vectors * values.clamp_min(0).sqrt().unsqueeze(1)) @ vectors.transpose(1, 2)


def _output_residuals(subject: Subject, outputs: Tensor) -> Tensor:
    """``d l_i / d f_i`` for every sample: ``(N, C)``."""
    y = subject.data.y.to(outputs.device)
    if subject.loss_name == "cross_entropy":
        onehot = torch.nn.functional.one_hot(y, outputs.shape[1]).to(outputs.dtype)
        return torch.softmax(outputs, dim=1) - onehot
    return outputs - subject.targets(y)


class FisherFactor:
    """``A = M J`` with ``F = A^T A`` for one Fisher ``kind`` (module docstring).

    ``transpose_apply(W)`` gives ``A^T w`` for every row ``w`` of ``W (k, r)`` (``k`` batched
    vjps), ``apply(V)`` gives ``A v`` for every row of ``V (k, P)`` (``k`` batched jvps).
    """

    def __init__(self, subject: Subject, kind: str = "true", meter: CostMeter | None = None):
        if kind not in KINDS:
            raise unknown_name("Fisher kind", kind, KINDS)
        self.subject = subject
        self.kind = kind
        self.jacobian = OutputJacobian(subject, meter)
        self.meter = self.jacobian.meter
        if not torch.isfinite(self.jacobian.outputs).all():
            raise NonFiniteError(
                "the network's outputs are not finite (NaN or inf: the forward pass "
                "overflowed), so the Fisher is not defined"
            )
        self.blocks = output_blocks(subject, self.jacobian.outputs, kind)

    @property
    def num_rows(self) -> int:
        """``r``: the size of the dual Gram matrix."""
        return self.blocks.shape[0] * self.blocks.shape[1]

    @property
    def num_params(self) -> int:
        return self.subject.num_params

    def transpose_apply(self, w: Tensor) -> Tensor:
        """``A^T w`` for each row of ``w (k, r)``: ``(k, P)``."""
        n, m, _ = self.blocks.shape
        u = torch.einsum("kia,iac->kic", w.reshape(-1, n, m), self.blocks)
        return self.jacobian.vjp_batched(u)

    def apply(self, v: Tensor) -> Tensor:
        """``A v`` for each row of ``v (k, P)``: ``(k, r)``."""
        out = self.jacobian.jvp_batched(v)
        return torch.einsum("iac,kic->kia", self.blocks, out).reshape(v.shape[0], -1)

    def gram_apply(self, w: Tensor) -> Tensor:
        """``A A^T w`` for each row of ``w (k, r)``: the dual Gram operator."""
        return self.apply(self.transpose_apply(w))

    def mean_output_gradients(self) -> Tensor:
        """``(1/N) sum_i grad_theta f_k(x_i)`` for every output ``k``: ``(C, P)``."""
        n, c = self.jacobian.outputs.shape
        eye = torch.eye(c, dtype=self.blocks.dtype, device=self.blocks.device)
        return self.jacobian.vjp_batched(eye.unsqueeze(1).expand(c, n, c) / n)


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
    activations are estimated as the elements of every module output on the largest batch.
    """
    per_vector = factor.num_params + _activation_elements(factor.subject)
    itemsize = torch.finfo(factor.blocks.dtype).bits // 8
    fit = int(_budget_bytes(max_memory_mb) / 2 // (3 * itemsize * per_vector))
    return max(1, min(factor.num_rows, fit))


def _budget_bytes(max_memory_mb: float) -> float:
    if not max_memory_mb > 0:
        raise ConfigError(f"max_memory_mb must be positive, got {max_memory_mb!r}.")
    return max_memory_mb * 2**20


def _activation_elements(subject: Subject) -> int:
    """Elements of all leaf-module outputs in one forward pass of the largest batch."""
    counted = [0]

    def count(_module, _inputs, output) -> None:
        if isinstance(output, Tensor):
            counted[0] += output.numel()

    leaves = [m for m in subject.model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        size = subject.batch_size or subject.num_samples
        with torch.no_grad():
            subject.output(subject.theta, subject.data.x[:size].to(subject.device))
    finally:
        for h in handles:
            h.remove()
    return counted[0]


def fits_dense(factor: FisherFactor, max_memory_mb: float) -> bool:
    """Whether ``A`` (``r x P``) fits in half of the memory budget."""
    itemsize = torch.finfo(factor.blocks.dtype).bits // 8
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
    blocks = factor.blocks
    r = factor.num_rows
    eye = torch.eye(r, dtype=blocks.dtype, device=blocks.device)
    diagonal = torch.zeros(factor.num_params, dtype=blocks.dtype, device=blocks.device)
    if use_dense:
        rows = torch.cat([factor.transpose_apply(eye[i : i + chunk]) for i in range(0, r, chunk)])
        return GramBuild(rows @ rows.T, rows.pow(2).sum(dim=0), "dense-jacobian", chunk)
    gram = torch.empty((r, r), dtype=blocks.dtype, device=blocks.device)
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
) -> TraceEstimate:
    """Hutchinson's estimator (Hutchinson 1989) on the dual Gram, sharing products.

    With Rademacher ``z`` (``E z z^T = I``, ``r``-dim): ``a = A^T z`` gives
    ``E ||a||^2 = tr(A A^T) = tr F`` and ``E a ⊙ a = diag(F)`` from one vjp, and
    ``b = A a`` gives ``E ||b||^2 = tr((A A^T)^2) = sum lambda^2`` from one more jvp
    (skipped with ``squares=False``).

    ``deflate`` (``(k, r)``, orthonormal rows spanning an invariant subspace of ``A A^T``,
    e.g. converged top eigenvectors) projects the probes onto its complement, so the
    estimates cover only the rest of the spectrum. The caller adds the exact part of the
    deflated eigenpairs; removing the outliers removes most of the variance, the idea of
    Hutch++ (Meyer et al. 2021) with the sketch taken from Lanczos.
    """
    if num_probes < 2:
        raise ConfigError(f"num_probes must be at least 2 (for an error bar), got {num_probes}.")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    blocks = factor.blocks
    firsts, seconds = [], []
    diagonal = torch.zeros(factor.num_params, dtype=blocks.dtype, device=blocks.device)
    for start in range(0, num_probes, chunk):
        k = min(chunk, num_probes - start)
        z = torch.randint(0, 2, (k, factor.num_rows), generator=gen).to(blocks) * 2 - 1
        if deflate is not None:
            z = z - (z @ deflate.T) @ deflate
        a = factor.transpose_apply(z)
        diagonal += a.pow(2).sum(dim=0)
        firsts.append(a.pow(2).sum(dim=1))
        if squares:
            b = factor.apply(a)
            if deflate is not None:
                b = b - (b @ deflate.T) @ deflate
            seconds.append(b.pow(2).sum(dim=1))
    first = torch.cat(firsts).double()
    second = torch.cat(seconds).double() if squares else torch.full_like(first, float("nan"))
    root = num_probes**0.5
    return TraceEstimate(
        float(first.mean()),
        float(first.std() / root),
        float(second.mean()),
        float(second.std() / root),
        diagonal / num_probes,
    )
