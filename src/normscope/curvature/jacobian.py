"""Jacobian-vector products of the whole-batch output map ``theta -> f(theta; X)``.

With batch norm in train mode every output depends on every sample of its batch, so
``J`` is the Jacobian of the whole-batch function, never a stack of per-sample
Jacobians. With several batches (``batch_size``, a DataLoader) each batch is its own
function (its own batch statistics) and ``J`` stacks their Jacobians. Outputs of any
shape are flattened batch by batch, in batch then row-major order: ``J`` has
``D = sum_b numel(f(theta; X_b))`` rows.

Under a process group (:mod:`normscope.distributed`) the rows are every rank's batches,
rank after rank: the per-batch forms (``jvp_parts``) stay local to the rank's batches,
``J^T u`` is summed over the ranks, and the flat forms take and give vectors of all ``D``
rows, the same on every rank.
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

    @cached_property
    def row_sizes(self) -> list[int]:
        """Rows of ``J`` held by each rank, in rank order (one entry in one process)."""
        local = sum(p.size for p in self.parts)
        group = self.subject.group
        return [local] if group is None else group.sizes(local)

    @property
    def out_dim(self) -> int:
        """``D``: the rows of ``J`` (over every rank's batches)."""
        return sum(self.row_sizes)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_dim, self.subject.num_params)

    @property
    def outputs_finite(self) -> bool:
        """Whether every output (of every rank's batches) is finite."""
        local = all(bool(torch.isfinite(p.outputs).all()) for p in self.parts)
        group = self.subject.group
        return local if group is None else group.all(local)

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
        """``J^T u`` for per-batch ``us`` (each ``(k, n_b, *out)``): returns ``(k, P)``.

        ``us`` covers this rank's batches; the result is summed over the ranks. Rows of a
        batch's ``u`` that are zero (unit vectors that pick another batch's rows) add
        nothing and are skipped.
        """
        k = us[0].shape[0]
        self.meter.add("vjp", k)
        total = torch.zeros(k, self.subject.num_params, dtype=self.dtype, device=self.theta.device)
        with self.subject.modes():
            for (part, inputs, pullback), u in zip(self._batches(), us, strict=True):
                active = u.reshape(k, -1).ne(0).any(dim=1)
                if not bool(active.any()):
                    continue
                if pullback is None:
                    _, pullback = vjp(self._map(inputs), self.theta)
                u = u.to(self.subject.dtype).reshape(k, *part.outputs.shape)
                pulled = batched(lambda w, fn=pullback: fn(w)[0])
                if bool(active.all()):
                    total += pulled(u).to(self.dtype)
                else:
                    total[active] += pulled(u[active]).to(self.dtype)
        return self.subject.sum_over_shards(total)

    def jvp_batched(self, vs: Tensor) -> Tensor:
        """``J v`` for each row of ``vs (k, P)``: ``(k, D)``."""
        local = torch.cat([t.reshape(vs.shape[0], -1) for t in self.jvp_parts(vs)], dim=1)
        group = self.subject.group
        return local if group is None else group.concat(local, self.row_sizes)

    def vjp_batched(self, us: Tensor) -> Tensor:
        """``J^T u`` for each row of ``us (k, D)``: ``(k, P)``."""
        group = self.subject.group
        local = us if group is None else group.columns(us, self.row_sizes)
        sizes = [p.size for p in self.parts]
        return self.vjp_parts(list(torch.split(local, sizes, dim=1)))

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
