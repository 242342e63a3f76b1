"""Jacobian products of the whole-batch map ``X -> f(theta; X)`` with respect to the inputs.

With batch norm in train mode the outputs of a batch depend on every input of it, so the
input Jacobian is that of the whole-batch function, ``J = dF/dX`` of shape
``(N*C, N*D)`` (D = features per sample). Its spectral norm bounds every per-sample block
``d f_i / d x_i`` from above. When samples are independent (eval mode, or no batch norm)
``J`` is block diagonal, and one whole-batch vector-Jacobian product with the same output
direction for every sample yields one row of *every* per-sample Jacobian at once; ``C`` such
products give all per-sample Jacobians (:meth:`InputJacobian.per_sample`).
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch.func import jvp, vjp

from normscope.curvature.operator import batched, top_eigenpair
from normscope.errors import ModelError
from normscope.measurement import CostMeter
from normscope.subject import Subject


class InputJacobian:
    """``J = dF/dX`` at the batch ``x`` (shape ``(N, *D)``), applied without forming it.

    ``jvp(v)`` takes ``v`` shaped like ``x`` and returns ``J v`` as ``(N, C)``; ``vjp(u)``
    takes ``(N, C)`` and returns ``J^T u`` shaped like ``x``. Batched variants take a leading
    dimension of vectors. Products are counted on ``meter`` as ``jvp`` / ``vjp``.
    """

    def __init__(
        self,
        subject: Subject,
        x: torch.Tensor,
        theta: torch.Tensor | None = None,
        meter: CostMeter | None = None,
    ) -> None:
        self.subject = subject
        self.x = x.detach()
        self.theta = subject.theta if theta is None else theta
        self.meter = meter if meter is not None else CostMeter()

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return self.subject.output(self.theta, x)

    @cached_property
    def _linearized(self):
        with self.subject.modes():
            out = vjp(self._map, self.x)
        self.meter.add("forward")
        return out

    @property
    def outputs(self) -> torch.Tensor:
        """``f(theta; x)`` as ``(N, C)`` (detached)."""
        return self._linearized[0].detach()

    @property
    def in_dim(self) -> int:
        return self.x.numel()

    @property
    def out_dim(self) -> int:
        return self.outputs.numel()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` for ``v`` shaped like ``x``: returns ``(N, C)``."""
        return self.jvp_batched(v.unsqueeze(0))[0]

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for ``u`` of shape ``(N, C)``: returns a tensor shaped like ``x``."""
        return self.vjp_batched(u.unsqueeze(0))[0]

    def jvp_batched(self, vs: torch.Tensor) -> torch.Tensor:
        """``J v`` for each ``v`` in ``vs`` ``(k, N, *D)``: returns ``(k, N, C)``."""
        self.meter.add("jvp", vs.shape[0])
        with self.subject.modes():
            return batched(lambda v: jvp(self._map, (self.x,), (v,))[1])(vs)

    def vjp_batched(self, us: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for each ``u`` in ``us`` ``(k, N, C)``: returns ``(k, N, *D)``."""
        fn = self._linearized[1]
        self.meter.add("vjp", us.shape[0])
        with self.subject.modes():
            return batched(lambda u: fn(u)[0])(us)

    def spectral_norm(
        self, *, tol: float = 1e-6, max_iter: int | None = None, seed: int = 0
    ) -> tuple[float, torch.Tensor | None]:
        """``||J||_2`` and a unit right singular vector (shaped like ``x``), by Lanczos.

        Lanczos runs on ``J J^T`` or ``J^T J``, whichever is smaller. Its top Ritz value
        never exceeds ``lambda_max``, so the returned norm is a lower bound that converges
        to ``||J||_2`` from below. Returns ``(inf, None)`` when the forward pass or a
        product overflows.
        """
        if not bool(torch.isfinite(self.outputs).all()):
            return math.inf, None
        n_out, n_in = self.out_dim, self.in_dim
        out_shape, in_shape = self.outputs.shape, self.x.shape

        def gram_out(us: torch.Tensor) -> torch.Tensor:
            back = self.vjp_batched(us.reshape(-1, *out_shape))
            return self.jvp_batched(back).reshape(us.shape[0], n_out)

        def gram_in(vs: torch.Tensor) -> torch.Tensor:
            fwd = self.jvp_batched(vs.reshape(-1, *in_shape))
            return self.vjp_batched(fwd).reshape(vs.shape[0], n_in)

        small_out = n_out <= n_in
        matmat = gram_out if small_out else gram_in
        dim = n_out if small_out else n_in
        top, vector = top_eigenpair(
            matmat,
            dim,
            dtype=self.x.dtype,
            device=self.x.device,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
        )
        if vector is None:
            return math.inf, None
        if small_out:
            vector = self.vjp(vector.reshape(out_shape)).reshape(-1)
        norm = vector.norm()
        vector = vector / norm if norm > 0 else vector
        return math.sqrt(top), vector.reshape(in_shape)

    def per_sample(self) -> torch.Tensor:
        """All per-sample Jacobians ``d f_i / d x_i`` as ``(N, C, D)``, from ``C`` vjps.

        Valid only when samples are independent (no batch norm in train mode); raises
        ModelError otherwise, because the whole-batch Jacobian is then not block diagonal.
        """
        if self.subject.samples_coupled:
            raise ModelError(
                "per-sample input Jacobians need independent samples, but batch norm in "
                "train mode couples them: use spectral_norm() of the whole batch, or "
                "bn_mode='eval'."
            )
        n, c = self.outputs.shape
        eye = torch.eye(c, dtype=self.x.dtype, device=self.x.device)
        rows = self.vjp_batched(eye.unsqueeze(1).expand(c, n, c))
        return rows.reshape(c, n, -1).transpose(0, 1)
