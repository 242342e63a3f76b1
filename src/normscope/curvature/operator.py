"""The operator base: a symmetric linear map on flat parameter-space vectors."""

from __future__ import annotations

from collections.abc import Callable

import torch

from normscope.errors import NonFiniteError
from normscope.linalg import lanczos
from normscope.measurement import CostMeter


class Operator:
    """A symmetric ``dim x dim`` linear operator ``v -> A v`` that counts its products.

    ``matvec`` takes a flat vector ``(dim,)``; ``matmat`` takes a batch ``(k, dim)`` and,
    where the subclass supports it, evaluates all ``k`` products in one vectorized pass.
    Every product adds to ``meter`` under ``kind`` (e.g. ``"hvp"``), so measures can
    report their cost. Operators plug straight into :mod:`normscope.linalg`.
    """

    kind = "matvec"

    def __init__(
        self,
        dim: int,
        dtype: torch.dtype,
        device: torch.device,
        meter: CostMeter | None = None,
        *,
        product_dtype: torch.dtype | None = None,
    ) -> None:
        self.dim = dim
        self.dtype = dtype
        self.device = device
        self.meter = meter if meter is not None else CostMeter()
        # half-precision models: products run in the model's dtype, while the vectors
        # the eigensolvers keep (``dtype``) are float32, where QR and tridiagonal
        # solves exist and the basis keeps its orthogonality
        self.product_dtype = dtype if product_dtype is None else product_dtype

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define _matvec")

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._matvec(v) for v in vs])

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.meter.add(self.kind)
        return self._matvec(v.to(self.product_dtype)).to(self.dtype)

    def matmat(self, vs: torch.Tensor) -> torch.Tensor:
        self.meter.add(self.kind, vs.shape[0])
        return self._matmat(vs.to(self.product_dtype)).to(self.dtype)

    __call__ = matvec

    def dense(self) -> torch.Tensor:
        """The full matrix, column by column through ``matmat`` (small models only)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return self.matmat(eye).T.contiguous()

    def restrict(self, index: torch.Tensor) -> Operator:
        """The principal sub-block ``A[index][:, index]`` as an operator of its own."""
        return _Restricted(self, index)


class _Restricted(Operator):
    def __init__(self, parent: Operator, index: torch.Tensor) -> None:
        super().__init__(
            len(index),
            parent.dtype,
            parent.device,
            parent.meter,
            product_dtype=parent.product_dtype,
        )
        self.parent = parent
        self.index = index
        self.kind = parent.kind

    def _embed(self, vs: torch.Tensor) -> torch.Tensor:
        full = torch.zeros(*vs.shape[:-1], self.parent.dim, dtype=vs.dtype, device=vs.device)
        full[..., self.index] = vs
        return full

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.parent._matvec(self._embed(v))[self.index]

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return self.parent._matmat(self._embed(vs))[:, self.index]


def batched(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``vmap`` of ``fn`` over a leading dimension, falling back to a loop where vmap fails.

    Some user modules call ops without batching rules; those still work, only slower.
    """
    vmapped = torch.func.vmap(fn)

    def run(vs: torch.Tensor) -> torch.Tensor:
        try:
            return vmapped(vs)
        except RuntimeError:
            return torch.stack([fn(v) for v in vs])

    return run


def top_eigenpair(
    matmat: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    tol: float,
    max_iter: int | None,
    seed: int,
) -> tuple[float, torch.Tensor | None]:
    """Largest eigenvalue (clipped at 0) and its vector of a PSD operator given by ``matmat``.

    Lanczos on ``(k, dim)`` blocks; an operator that overflows (NaN or inf in a product,
    e.g. a Gram ``J J^T`` of a very deep net) gives ``(inf, None)`` instead of an error,
    so callers can report ``inf`` with a note.
    """
    try:
        res = lanczos(
            lambda v: matmat(v.unsqueeze(0))[0],
            dim,
            matmat=matmat,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
            dtype=dtype,
            device=device,
        )
    except NonFiniteError:
        return float("inf"), None
    return max(float(res.eigenvalues[-1]), 0.0), res.eigenvectors[-1]
