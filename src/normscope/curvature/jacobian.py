"""Jacobian-vector products of the whole-batch output map ``theta -> f(theta; X)``.

With batch norm in train mode every output depends on every sample of its batch, so
``J`` is the Jacobian of the whole-batch function, never a stack of per-sample
Jacobians. With several batches (``batch_size``, a DataLoader) each batch is its own
function (its own batch statistics) and ``J`` stacks their Jacobians. Outputs of any
shape are flattened batch by batch, in batch then row-major order: ``J`` has
``D = sum_b numel(f(theta; X_b))`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor
from torch.func import jvp, vjp

from normscope.curvature.operator import batched
from normscope.measurement import CostMeter
from normscope.subject import Batch, Subject


@dataclass(frozen=True)
class OutputPart:
    """One batch's outputs ``f(theta; X_b)`` (detached) and its targets."""

    outputs: Tensor
    targets: Tensor | None
    weight: float

    @property
    def size(self) -> int:
        return self.outputs.numel()


class OutputJacobian:
    """``J = d f / d theta`` of shape ``(D, P)``, applied without forming it.

    ``jvp_parts(vs)`` gives ``J v`` per batch, ``(k, n_b, *out)`` for each row of
    ``vs (k, P)``; ``vjp_parts(us)`` takes such a list and returns ``J^T u`` as ``(k, P)``.
    The flat forms ``jvp_batched`` / ``vjp_batched`` work on ``(k, D)``. Vectors are
    evaluated in one vectorized pass per batch (batched over vectors, never samples).
    Products run in the model's dtype; results come back in the Subject's working
    dtype. With ``cache_graphs`` (default: for in-memory data) every batch's forward
    graph is kept for the vjps; otherwise each vjp re-runs the forward pass.
    """

    def __init__(
        self,
        subject: Subject,
        meter: CostMeter | None = None,
        *,
        cache_graphs: bool | None = None,
    ) -> None:
        self.subject = subject
        self.meter = meter if meter is not None else CostMeter()
        self.theta = subject.theta
        self.dtype = subject.work_dtype
        self.cache_graphs = not subject.source.streamed if cache_graphs is None else cache_graphs

    def _map(self, inputs):
        return lambda theta: self.subject.output(theta, inputs)

    @cached_property
    def _linearized(self) -> list[tuple[OutputPart, Batch | None, object]]:
        out = []
        with self.subject.modes():
            for b in self.subject.batches():
                if self.cache_graphs:
                    value, pullback = vjp(self._map(b.inputs), self.theta)
                else:
                    with torch.no_grad():
                        value, pullback = self.subject.output(self.theta, b.inputs), None
                part = OutputPart(value.detach(), b.targets, b.weight)
                out.append((part, b if self.cache_graphs else None, pullback))
        self.meter.add("forward", len(out))
        return out

    @property
    def parts(self) -> list[OutputPart]:
        """Every batch's outputs and targets, in order."""
        return [p for p, _, _ in self._linearized]

    @property
    def out_dim(self) -> int:
        """``D``: the rows of ``J``."""
        return sum(p.size for p in self.parts)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_dim, self.subject.num_params)

    @property
    def outputs_finite(self) -> bool:
        return all(bool(torch.isfinite(p.outputs).all()) for p in self.parts)

    def _batches(self):
        """``(part, inputs, pullback)`` per batch, re-reading streamed data."""
        if self.cache_graphs:
            for part, b, pullback in self._linearized:
                yield part, b.inputs, pullback
            return
        for (part, _, _), b in zip(self._linearized, self.subject.batches(), strict=True):
            yield part, b.inputs, None

    def jvp_parts(self, vs: Tensor) -> list[Tensor]:
        """``J v`` for each row of ``vs (k, P)``: per batch ``(k, n_b, *out)``."""
        self.meter.add("jvp", vs.shape[0])
        vs = vs.to(self.subject.dtype)
        out = []
        with self.subject.modes():
            for _, inputs, _ in self._batches():
                fn = self._map(inputs)
                out.append(batched(lambda v, fn=fn: jvp(fn, (self.theta,), (v,))[1])(vs))
        return [t.to(self.dtype) for t in out]

    def vjp_parts(self, us: list[Tensor]) -> Tensor:
        """``J^T u`` for per-batch ``us`` (each ``(k, n_b, *out)``): returns ``(k, P)``."""
        k = us[0].shape[0]
        self.meter.add("vjp", k)
        total = torch.zeros(k, self.subject.num_params, dtype=self.dtype, device=self.theta.device)
        with self.subject.modes():
            for (part, inputs, pullback), u in zip(self._batches(), us, strict=True):
                if pullback is None:
                    _, pullback = vjp(self._map(inputs), self.theta)
                u = u.to(self.subject.dtype).reshape(k, *part.outputs.shape)
                total += batched(lambda w, fn=pullback: fn(w)[0])(u).to(self.dtype)
        return total

    def jvp_batched(self, vs: Tensor) -> Tensor:
        """``J v`` for each row of ``vs (k, P)``: ``(k, D)``."""
        return torch.cat([t.reshape(vs.shape[0], -1) for t in self.jvp_parts(vs)], dim=1)

    def vjp_batched(self, us: Tensor) -> Tensor:
        """``J^T u`` for each row of ``us (k, D)``: ``(k, P)``."""
        sizes = [p.size for p in self.parts]
        return self.vjp_parts(list(torch.split(us, sizes, dim=1)))

    def jvp(self, v: Tensor) -> Tensor:
        """``J v`` as a flat ``(D,)`` vector."""
        return self.jvp_batched(v.unsqueeze(0))[0]

    def vjp(self, u: Tensor) -> Tensor:
        """``J^T u`` for a flat ``u (D,)``."""
        return self.vjp_batched(u.unsqueeze(0))[0]

    def dense(self) -> Tensor:
        """The full ``(D, P)`` Jacobian, built from batched vjps (small models only)."""
        d = self.out_dim
        eye = torch.eye(d, dtype=self.dtype, device=self.theta.device)
        chunk = max(1, 2**22 // max(self.subject.num_params, 1))
        return torch.cat([self.vjp_batched(eye[i : i + chunk]) for i in range(0, d, chunk)])
