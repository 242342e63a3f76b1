"""Jacobian-vector products of the whole-batch output map ``theta -> f(theta; X)``.

With batch norm in train mode every output depends on every sample of its batch, so
``J`` is the Jacobian of the whole-batch function (rows: samples x outputs, in sample
order), never a stack of per-sample Jacobians. With ``batch_size`` set, each mini-batch
is its own function (its own batch statistics) and ``J`` stacks their Jacobians.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch.func import jvp, vjp

from normscope.curvature.operator import batched
from normscope.measurement import CostMeter
from normscope.subject import Subject


class OutputJacobian:
    """``J = d f / d theta`` of shape ``(N*C, P)``, applied without forming it.

    ``jvp(v)`` returns ``J v`` as ``(N, C)``; ``vjp(u)`` takes ``u`` of shape ``(N, C)`` and
    returns ``J^T u`` of shape ``(P,)``. The ``*_batched`` variants take a leading dimension
    of vectors and evaluate them in one vectorized pass. The forward pass and the backward
    graph of every mini-batch are built once and reused by every ``vjp``.
    """

    def __init__(self, subject: Subject, meter: CostMeter | None = None) -> None:
        self.subject = subject
        self.meter = meter if meter is not None else CostMeter()
        self.theta = subject.theta
        self.batches = subject.batches()
        self.sizes = [len(b.x) for b in self.batches]
        self.num_outputs = subject.target_dim

    @property
    def shape(self) -> tuple[int, int]:
        return (self.subject.num_samples * self.num_outputs, self.subject.num_params)

    def _map(self, x: torch.Tensor):
        return lambda theta: self.subject.output(theta, x)

    @cached_property
    def _linearized(self) -> list[tuple[torch.Tensor, object]]:
        with self.subject.modes():
            out = [vjp(self._map(b.x), self.theta) for b in self.batches]
        self.meter.add("forward", len(self.batches))
        return out

    @property
    def outputs(self) -> torch.Tensor:
        """``f(theta; X)`` as ``(N, C)`` (detached)."""
        return torch.cat([o for o, _ in self._linearized]).detach()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` reshaped to ``(N, C)``."""
        self.meter.add("jvp")
        with self.subject.modes():
            return torch.cat([jvp(self._map(b.x), (self.theta,), (v,))[1] for b in self.batches])

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for ``u`` of shape ``(N, C)``."""
        self.meter.add("vjp")
        parts = torch.split(u, self.sizes)
        with self.subject.modes():
            return sum(fn(p)[0] for (_, fn), p in zip(self._linearized, parts, strict=True))

    def jvp_batched(self, vs: torch.Tensor) -> torch.Tensor:
        """``J v`` for each row of ``vs`` (k, P): returns ``(k, N, C)``."""
        self.meter.add("jvp", vs.shape[0])
        with self.subject.modes():
            return torch.cat(
                [
                    batched(lambda v, x=b.x: jvp(self._map(x), (self.theta,), (v,))[1])(vs)
                    for b in self.batches
                ],
                dim=1,
            )

    def vjp_batched(self, us: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for each ``u`` in ``us`` (k, N, C): returns ``(k, P)``."""
        self.meter.add("vjp", us.shape[0])
        parts = torch.split(us, self.sizes, dim=1)
        with self.subject.modes():
            return sum(
                batched(lambda u, fn=fn: fn(u)[0])(p)
                for (_, fn), p in zip(self._linearized, parts, strict=True)
            )

    def dense(self) -> torch.Tensor:
        """The full ``(N*C, P)`` Jacobian, built from batched vjps (small models only)."""
        n, c = self.subject.num_samples, self.num_outputs
        eye = torch.eye(n * c, dtype=self.subject.dtype, device=self.theta.device)
        return self.vjp_batched(eye.reshape(n * c, n, c))
