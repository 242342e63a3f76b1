"""Hessian-vector products of the empirical risk ``L(theta)`` of a Subject.

``H = d^2 L / d theta^2`` with ``L = sum_b w_b L_b`` the weighted mean of the mini-batch
losses (``w_b = n_b / N``; one batch when ``batch_size`` is unset). With batch norm in
train mode each mini-batch is evaluated with its own batch statistics, so ``H`` is the
Hessian of the function SGD trains on those batches.

Each batch is linearized once: ``torch.func.vjp(grad(L_b), theta)`` runs the forward and
backward pass and returns a closure whose every call is one double-backward,
``H_b v``, with no new forward pass. Measured by ``benchmarks/bench_hessian.py`` (one
thread, a loaded machine)
on the MLP 784-512-512-512-10 with batch norm and 512 samples, one such product costs
1.8x a gradient (forward plus backward) in eval mode and 2.6x in train mode, against
3.7x / 4.4x for ``jvp(grad)`` and 1.9x / 2.3x for an autograd double backward through a
retained ``create_graph`` gradient (which needs the same graph). ``matmat`` vmaps the
closure over vectors (in chunks of ``chunk_size``): per vector that is on par with
single products on the MLP and much cheaper on tiny models, but about twice as slow on
the batch-norm CNN (vmapped convolution backward). Vectors are batched, samples never:
vmapping over vectors is valid when batch norm couples the samples.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import torch
from torch.func import grad, vjp

from normscope.curvature.operator import Operator, batched
from normscope.measurement import CostMeter
from normscope.subject import Batch, Subject

Closure = Callable[[torch.Tensor], torch.Tensor]


def batch_loss(subject: Subject, batch: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    """``theta -> L_b(theta)``: the mean loss of one batch, evaluated as one batch."""
    return lambda theta: subject.loss_of(subject.output(theta, batch.x), batch.y)


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
    # vmap holds one copy of every intermediate per vector: 16 keeps the memory of a
    # batched product within a few times that of one, past the point where batching pays
    chunk_size = 16

    def __init__(
        self, subject: Subject, meter: CostMeter | None = None, *, cache_graphs: bool = True
    ) -> None:
        super().__init__(subject.num_params, subject.dtype, subject.device, meter)
        self.subject = subject
        self.theta = subject.theta
        self.batches = subject.batches()
        self.cache_graphs = cache_graphs

    def _linearize(self, batch: Batch) -> tuple[torch.Tensor, Closure]:
        with self.subject.modes():
            g, pullback = vjp(grad(batch_loss(self.subject, batch)), self.theta)
        self.meter.add("forward")
        self.meter.add("backward")
        return g, lambda v: pullback(v)[0]

    @cached_property
    def _linearized(self) -> list[tuple[float, torch.Tensor, Closure]]:
        return [(b.weight, *self._linearize(b)) for b in self.batches]

    def _closures(self):
        if self.cache_graphs:
            for w, _, fn in self._linearized:
                yield w, fn
        else:
            for b in self.batches:
                yield b.weight, self._linearize(b)[1]

    @property
    def gradient(self) -> torch.Tensor:
        """``grad L(theta)`` (a by-product of the linearization)."""
        if self.cache_graphs:
            return sum(w * g for w, g, _ in self._linearized)
        return sum(b.weight * self._linearize(b)[0] for b in self.batches)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(v) for w, fn in self._closures())

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._chunk(c) for c in torch.split(vs, self.chunk_size)])

    def _chunk(self, vs: torch.Tensor) -> torch.Tensor:
        return sum(w * batched(fn)(vs) for w, fn in self._closures())
