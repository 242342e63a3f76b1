"""The processes one measurement spans, and the few collectives normscope runs on them.

A measurement across processes is data parallel: every rank holds the same model and a
shard of the batches, computes its batches' part of each data-set sum, and the parts
are added with one ``all_reduce`` (``torch.distributed``; gloo on CPU, NCCL on GPUs).
Every rank then holds the same vector, so the eigensolvers and stochastic estimators run
replicated, with the same seeds, and take the same decisions.

Vectors in an output space that is itself sharded (one row per sample or loss term: the
Jacobian's ``D`` rows, the Fisher factor's ``r`` rows) are laid out rank after rank, in
rank order: rank ``q`` owns the block of columns ``[offset_q, offset_q + n_q)``. Gathering
such a vector embeds each rank's block in zeros and adds the ranks' vectors, which is
exact (``x + 0 = x``) and keeps one collective, ``all_reduce``, for everything.

Identical replicas are what make this correct: :meth:`Group.agree` compares a
description of each rank's model and data (parameter and buffer checksums included)
before any measurement, and turns one rank's failure into an error on every rank
(a rank that raises alone would leave the others waiting in a collective).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from normscope.errors import ConfigError, DistributedError


class Group:
    """A ``torch.distributed`` process group of at least two processes.

    Build it with :meth:`of`, which gives ``None`` for no group or a group of one process
    (a measurement in one process needs no collective).
    """

    def __init__(self, process_group: Any) -> None:
        self.process_group = process_group
        self.rank = dist.get_rank(process_group)
        self.size = dist.get_world_size(process_group)
        self.backend = str(dist.get_backend(process_group))
        # NCCL reduces CUDA tensors only; scalars and flags travel on this rank's GPU
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if self.backend == "nccl"
            else torch.device("cpu")
        )

    @classmethod
    def of(cls, process_group: Any) -> Group | None:
        """The Group of ``process_group``, or None for ``None`` or a group of one process.

        Raises:
            ConfigError: a group given while ``torch.distributed`` is not initialized, or
                something that is not a process group.
        """
        if process_group is None:
            return None
        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError(
                "a process_group was given, but torch.distributed is not initialized: call "
                "torch.distributed.init_process_group() first (torchrun sets up what it "
                "needs), or pass process_group=None to measure in this process alone."
            )
        if not isinstance(process_group, dist.ProcessGroup):
            raise ConfigError(
                f"process_group must be a torch.distributed ProcessGroup (e.g. "
                f"torch.distributed.group.WORLD), got {type(process_group).__name__}."
            )
        group = cls(process_group)
        return group if group.size > 1 else None

    # ------------------------------------------------------------------ sums
    def sum(self, t: Tensor) -> Tensor:
        """The elementwise sum of ``t`` over the ranks (a new tensor; ``t`` is kept)."""
        out = t.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.process_group)
        return out

    def sum_numbers(self, values: Sequence[float], dtype: torch.dtype = torch.float64) -> list:
        """``values`` summed over the ranks, as Python numbers."""
        t = torch.tensor(list(values), dtype=dtype, device=self.device)
        return self.sum(t).cpu().tolist()

    def maximum(self, value: int) -> int:
        """The largest of every rank's ``value``."""
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.process_group)
        return int(t.item())

    def all(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        t = torch.tensor([int(bool(flag))], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.process_group)
        return bool(t.item())

    def sizes(self, n: int) -> list[int]:
        """Every rank's ``n``, in rank order."""
        found = torch.zeros(self.size, dtype=torch.int64, device=self.device)
        found[self.rank] = n
        return [int(v) for v in self.sum(found).cpu().tolist()]

    # ------------------------------------------------------------------ sharded columns
    def offset(self, sizes: Sequence[int]) -> int:
        """Where this rank's block starts in a space laid out rank after rank."""
        return sum(sizes[: self.rank])

    def concat(self, local: Tensor, sizes: Sequence[int]) -> Tensor:
        """``(k, sum(sizes))``: every rank's ``(k, sizes[q])`` block side by side."""
        full = local.new_zeros(*local.shape[:-1], sum(sizes))
        start = self.offset(sizes)
        full[..., start : start + local.shape[-1]] = local
        return self.sum(full)

    def columns(self, full: Tensor, sizes: Sequence[int]) -> Tensor:
        """This rank's block of columns of ``full`` (``(k, sum(sizes))``)."""
        start = self.offset(sizes)
        return full[..., start : start + sizes[self.rank]]

    # ------------------------------------------------------------------ agreement
    def agree(self, description: dict[str, Any] | None, error: BaseException | None) -> None:
        """Every rank's ``description`` must be equal and no rank may have failed.

        ``error`` is this rank's failure (or None); a failure on any rank raises on every
        rank: the rank's own error where it failed, a :class:`DistributedError` naming the
        failed rank elsewhere. Differing descriptions raise :class:`DistributedError`
        naming the first field that differs and each rank's value.
        """
        message = None if error is None else f"{type(error).__name__}: {error}"
        seen: list[Any] = [None] * self.size
        dist.all_gather_object(seen, (message, description), group=self.process_group)
        failed = [(q, m) for q, (m, _) in enumerate(seen) if m is not None]
        if error is not None:
            raise error
        if failed:
            q, m = failed[0]
            raise DistributedError(f"rank {q} of {self.size} failed: {m}")
        first = seen[0][1] or {}
        for key in first:
            values = [d[1][key] for d in seen]
            if any(v != values[0] for v in values[1:]):
                shown = "; ".join(f"rank {q}: {_short(v)}" for q, v in enumerate(values))
                raise DistributedError(
                    f"the ranks disagree on {key} ({shown}): every rank must measure the same "
                    "model (same parameters, buffers, dtype and selection) with the same "
                    "loss and batch-norm mode; only the data differ (each rank's shard)."
                )

    def describe(self) -> dict[str, object]:
        return {"world_size": self.size, "backend": self.backend}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fingerprint(tensors: Sequence[Tensor]) -> tuple[float, ...]:
    """Float64 sums and sums of squares of ``tensors``: equal replicas give equal numbers."""
    if not tensors:
        return ()
    stats = [
        torch.stack([t.detach().double().sum(), t.detach().double().pow(2).sum()]) for t in tensors
    ]
    return tuple(torch.cat(stats).cpu().tolist())


class _SumOverRanks(torch.autograd.Function):
    """``y = sum over ranks of x``; the gradient passes through to the local ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Group) -> Tensor:
        return group.sum(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        return grad, None


class _Replicated(torch.autograd.Function):
    """Identity on replicated parameters; the backward pass sums their gradient over ranks."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Group) -> Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        return ctx.group.sum(grad), None


def replicated(theta: Tensor, group: Group) -> Tensor:
    """``theta`` itself, so that gradients reaching it are summed over the ranks (as DDP).

    Together with :func:`sum_over_ranks` this makes first-order autograd of a loss summed
    over shards give the full gradient on every rank; second derivatives through it are
    refused (``once_differentiable``), never silently local.
    """
    return _Replicated.apply(theta, group)


def sum_over_ranks(value: Tensor, group: Group) -> Tensor:
    """``value`` summed over the ranks, differentiable once (see :func:`replicated`)."""
    return _SumOverRanks.apply(value, group)
