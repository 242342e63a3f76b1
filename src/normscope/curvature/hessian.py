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

Vectors are per parameter inside (:mod:`normscope.curvature.placement`): the
linearization has one leaf per selected parameter, on that parameter's device, so a model
spread over several devices is differentiated where its layers are; ``matvec`` and
``matmat`` take and give flat vectors on the operator's vector device (the model's, or the
host with ``vector_device="cpu"``, which keeps an eigensolver's basis off the
accelerators), and :meth:`Hessian.product` takes and gives the per-parameter form.

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
from normscope.curvature.placement import Placement
from normscope.measurement import CostMeter
from normscope.subject import Batch, Subject

Pieces = list[torch.Tensor]
"""A parameter-space vector as one tensor per selected parameter, each on its device."""
Closure = Callable[[Pieces, bool], Pieces]
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


def batch_loss(subject: Subject, batch: Batch) -> Callable[[torch.Tensor | Pieces], torch.Tensor]:
    """``theta -> L_b(theta)``: the mean loss of one batch, evaluated as one batch.

    ``theta`` is flat or per parameter (:meth:`Subject.output`)."""
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
        vector_device: where ``matvec`` / ``matmat`` take and give flat vectors (default:
            the model's first device); products still run where the parameters are.

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
        vector_device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            subject.num_params,
            subject.work_dtype,
            torch.device(vector_device) if vector_device is not None else subject.device,
            meter,
            product_dtype=subject.dtype,
        )
        self.subject = subject
        self.placement = Placement(subject)
        self.cache_graphs = not subject.source.streamed if cache_graphs is None else cache_graphs

    @property
    def theta(self) -> torch.Tensor:
        """The point ``theta`` the Hessian is taken at, flat on the vector device."""
        return self.subject.theta.to(self.device)

    def _linearize(self, batch: Batch) -> tuple[Pieces, Closure]:
        # a copy: the linearization is of theta as it is now, whatever the model does next
        leaves = [p.clone().requires_grad_(True) for p in self.subject.params]
        with torch.enable_grad(), _linearization_mode(self.subject):
            loss = batch_loss(self.subject, batch)(leaves)
            g = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        self.meter.add("forward")
        self.meter.add("backward")
        g = [torch.zeros_like(x) if gi is None else gi for gi, x in zip(g, leaves, strict=True)]
        return [gi.detach() for gi in g], _double_backward(g, leaves)

    @cached_property
    def _linearized(self) -> list[tuple[float, Pieces, Closure]]:
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
        blocks = self._summed((w, self.placement.blocks(g)) for w, g in terms)
        return self.placement.flat(blocks, self.device)

    def product(self, vs: Pieces) -> Pieces:
        """``H v`` with ``v`` given per parameter: a tensor shaped like each selected
        parameter, on its device, in the model's dtype, with an optional leading batch
        dimension ``(k, *shape)`` for ``k`` vectors. Returns ``H v`` in the same form.

        The products of models spread over several devices are computed where the
        parameters live; ``matvec`` / ``matmat`` wrap this for flat vectors on the
        operator's vector device.
        """
        batch = vs[0].ndim > len(self.subject.layout.shapes[0])
        self.meter.add(self.kind, vs[0].shape[0] if batch else 1)
        return self.placement.unblock(self._products(vs, batch))

    def _products(self, vs: Pieces, batch: bool) -> list[torch.Tensor]:
        """``sum_b w_b H_b v`` per device block, over this rank's batches and every rank's."""
        return self._summed(
            (w, [t.to(self.dtype) for t in self.placement.blocks(fn(vs, batch))])
            for w, fn in self._closures()
        )

    def _apply_flat(self, vs: torch.Tensor, batch: bool) -> torch.Tensor:
        pieces = self.placement.pieces(vs, self.product_dtype)
        return self.placement.flat(self._products(pieces, batch), self.device)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._apply_flat(v, batch=False)

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self._apply_flat(c, batch=True) for c in torch.split(vs, self.chunk_size)]
        )

    def _summed(self, terms) -> list[torch.Tensor]:
        """``sum_b w_b t_b`` of per-device blocks over this rank's batches, then every rank's."""
        total = None
        for w, blocks in terms:
            blocks = blocks if w == 1.0 else [w * t for t in blocks]
            total = blocks if total is None else [a + b for a, b in zip(total, blocks, strict=True)]
        if total is None:  # no counted loss term in this rank's shard
            total = [
                torch.zeros(
                    sum(self.subject.layout.numels[i] for i in idx), dtype=self.dtype, device=d
                )
                for d, idx in self.placement.groups
            ]
        return [self.subject.sum_over_shards(t) for t in total]


def _double_backward(g: Pieces, leaves: Pieces) -> Closure:
    """``(v, batch) -> d(g . v)/d leaves`` per parameter, through ``g``'s graph.

    ``v`` holds one tensor per parameter, with a leading dimension ``k`` when ``batch``.
    Only the parts of ``g`` that depend on ``theta`` take part; the rest of ``H`` is zero.
    """
    live = [i for i, gi in enumerate(g) if gi.requires_grad]

    def product(vs: Pieces, batch: bool) -> Pieces:
        if not live:  # the gradient does not depend on theta: H = 0
            return [torch.zeros_like(v) for v in vs]
        if not batch:
            # the gradient of the scalar g . v, not grad(g, leaves, v): passing v as a
            # grad_output makes torch import sympy on first use, ~2 s on one CPU thread
            dot = sum((g[i] * vs[i]).sum() for i in live)
            found = torch.autograd.grad(dot, leaves, retain_graph=True, allow_unused=True)
            return [torch.zeros_like(v) if f is None else f for f, v in zip(found, vs, strict=True)]
        try:
            found = torch.autograd.grad(
                [g[i] for i in live],
                leaves,
                [vs[i] for i in live],
                retain_graph=True,
                allow_unused=True,
                is_grads_batched=True,
            )
        except RuntimeError:
            # ops without a batching rule: one product per vector
            rows = [product([v[j] for v in vs], False) for j in range(vs[0].shape[0])]
            return [torch.stack(parts) for parts in zip(*rows, strict=True)]
        return [torch.zeros_like(v) if f is None else f for f, v in zip(found, vs, strict=True)]

    return product
