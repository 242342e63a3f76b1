"""Hessian-vector products of the empirical risk ``L(theta)`` of a Subject.

``H = d^2 L / d theta^2`` with ``L = sum_b w_b L_b`` the weighted mean of the mini-batch
losses (``w_b = n_b / N``; one batch when ``batch_size`` is unset). With batch norm in
train mode each mini-batch is evaluated with its own batch statistics, so ``H`` is the
Hessian of the function SGD trains on those batches.

Each batch is linearized once: one forward pass and one backward pass with
``create_graph=True`` give ``g_b = grad L_b(theta)`` together with its graph, and every
product ``H_b v = d(g_b . v) / d theta`` is then one double backward through that
retained graph, with no new forward pass. Plain autograd is used rather than
``torch.func.vjp(grad(L_b))`` (same products, same cost per product): the first
``torch.func`` transform of a process imports ``torch._dynamo``, ~2 s on one CPU
thread, which dominated a single sharpness call. ``matmat`` batches vectors
(``is_grads_batched``, in chunks of ``chunk_size``); vectors are batched, samples never,
which is valid when batch norm couples the samples.

Batch norm with running statistics (eval mode) is an affine map per channel,
``y = (x - mu) w / sqrt(var + eps) + b``; during the linearization it is evaluated as
that product and sum instead of PyTorch's fused kernel, whose double backward
implements the general batch-statistics formula and costs ~10 % of a product on the
MLP 784-512-512-512-10 and ~30 % on the batch-norm CNN of
``benchmarks/bench_hessian.py``. The value is the same function, to rounding.

Under a process group (:mod:`normscope.distributed`) each rank linearizes its own
batches and every product is summed over the ranks, so all ranks hold the same ``H v``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import cached_property

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from normscope.curvature.operator import Operator
from normscope.measurement import CostMeter
from normscope.subject import Batch, Subject

Closure = Callable[[torch.Tensor], torch.Tensor]
# the signature of torch.nn.functional.batch_norm, in order
_BATCH_NORM_ARGS = (
    "input",
    "running_mean",
    "running_var",
    "weight",
    "bias",
    "training",
    "momentum",
    "eps",
)


def batch_loss(subject: Subject, batch: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """``theta -> L_b(theta)``: the mean loss of one batch, evaluated as one batch."""
    return lambda theta: subject.loss_of(subject.output(theta, batch.inputs), batch.targets)


class _AffineEvalBatchNorm(TorchFunctionMode):
    """Evaluates ``F.batch_norm`` with running statistics as ``x * scale + shift``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            a = dict(zip(_BATCH_NORM_ARGS, args, strict=False)) | kwargs
            if not a.get("training", False) and a["running_mean"] is not None:
                return _affine_batch_norm(a)
        return func(*args, **kwargs)


def _affine_batch_norm(a: dict) -> torch.Tensor:
    x = a["input"]
    eps = a.get("eps", 1e-5)
    scale = torch.rsqrt(a["running_var"] + eps)
    shift = -a["running_mean"] * scale
    if a.get("weight") is not None:
        scale, shift = scale * a["weight"], shift * a["weight"]
    if a.get("bias") is not None:
        shift = shift + a["bias"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.reshape(shape) + shift.reshape(shape)


@contextlib.contextmanager
def _linearization_mode(subject: Subject) -> Iterator[None]:
    with subject.modes():
        if subject.bn_mode == "eval" and subject.has_batch_norm:
            with _AffineEvalBatchNorm():
                yield
        else:
            yield


class Hessian(Operator):
    """``v -> H v`` for the Subject's risk, without forming ``H`` (``P x P``).

    Args:
        subject: what to differentiate (parameters, data, batch-norm mode).
        meter: counts ``hvp`` (one per vector), ``forward`` and ``backward`` (the
            linearization, once per batch).
        cache_graphs: keep every mini-batch's linearization alive (memory: one
            double-backward graph per batch) so products need no forward pass; with
            ``False`` each product re-linearizes batch by batch, trading a forward and a
            backward pass per batch and product for the memory of a single graph.
            Default: cache in-memory data, re-linearize data streamed from a loader
            (whose memory then stays that of one batch).

    Example:
        >>> import torch
        >>> from normscope import Subject
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 2)).double()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
        >>> h = Hessian(Subject(model, (x, y)))
        >>> bool(torch.allclose(h.dense(), h.dense().T))
        True
    """

    kind = "hvp"
    # a batched product holds one copy of every intermediate per vector: 16 keeps its
    # memory within a few times that of one product, past the point where batching pays
    chunk_size = 16

    def __init__(
        self,
        subject: Subject,
        meter: CostMeter | None = None,
        *,
        cache_graphs: bool | None = None,
    ) -> None:
        super().__init__(
            subject.num_params,
            subject.work_dtype,
            subject.device,
            meter,
            product_dtype=subject.dtype,
        )
        self.subject = subject
        self.theta = subject.theta
        self.cache_graphs = not subject.source.streamed if cache_graphs is None else cache_graphs

    def _linearize(self, batch: Batch) -> tuple[torch.Tensor, Closure]:
        leaf = self.theta.detach().requires_grad_(True)
        with torch.enable_grad(), _linearization_mode(self.subject):
            loss = batch_loss(self.subject, batch)(leaf)
            g = torch.autograd.grad(loss, leaf, create_graph=True)[0]
        self.meter.add("forward")
        self.meter.add("backward")
        return g.detach(), _double_backward(g, leaf)

    @cached_property
    def _linearized(self) -> list[tuple[float, torch.Tensor, Closure]]:
        return [(b.weight, *self._linearize(b)) for b in self.subject.loss_batches()]

    def _closures(self):
        if self.cache_graphs:
            for w, _, fn in self._linearized:
                yield w, fn
        else:
            for b in self.subject.loss_batches():
                yield b.weight, self._linearize(b)[1]

    @property
    def gradient(self) -> torch.Tensor:
        """``grad L(theta)`` (a by-product of the linearization), in the working dtype."""
        if self.cache_graphs:
            terms = ((w, g) for w, g, _ in self._linearized)
        else:
            terms = ((b.weight, self._linearize(b)[0]) for b in self.subject.loss_batches())
        return self._summed(((w, g.to(self.dtype)) for w, g in terms), self.theta)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._summed(((w, fn(v).to(self.dtype)) for w, fn in self._closures()), v)

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._chunk(c) for c in torch.split(vs, self.chunk_size)])

    def _chunk(self, vs: torch.Tensor) -> torch.Tensor:
        return self._summed(((w, fn(vs).to(self.dtype)) for w, fn in self._closures()), vs)

    def _summed(self, terms, like: torch.Tensor) -> torch.Tensor:
        """``sum_b w_b t_b`` over this process's batches, then over every rank's."""
        total = _weighted_sum(terms)
        if total is None:  # no counted loss term in this rank's shard
            total = torch.zeros_like(like, dtype=self.dtype)
        return self.subject.sum_over_shards(total)


def _double_backward(g: torch.Tensor, leaf: torch.Tensor) -> Closure:
    """``v -> d(g . v)/d leaf`` for ``v (P,)`` or a batch ``(k, P)``, through ``g``'s graph."""
    if not g.requires_grad:  # the gradient does not depend on theta: H = 0
        return torch.zeros_like

    def product(v: torch.Tensor) -> torch.Tensor:
        batch = v.ndim == 2
        try:
            (out,) = torch.autograd.grad(
                g, leaf, v, retain_graph=True, allow_unused=True, is_grads_batched=batch
            )
        except RuntimeError:
            if not batch:
                raise
            # ops without a batching rule: one product per vector
            return torch.stack([product(u) for u in v])
        return torch.zeros_like(v) if out is None else out

    return product


def _weighted_sum(terms) -> torch.Tensor:
    """``sum_b w_b t_b``, skipping the scaling for the usual single batch of weight 1."""
    total = None
    for w, t in terms:
        t = t if w == 1.0 else w * t
        total = t if total is None else total + t
    return total
