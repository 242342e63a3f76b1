"""Jacobian products of the whole-batch map ``Z -> f(theta; Z)`` with respect to the inputs.

``Z`` is what the Lipschitz constant is taken with respect to (:func:`input_point`): the
model's floating input (features, images, ``pixel_values``), or, for models fed integer
token ids, the output of their token embedding, the first continuous representation.

With batch norm in train mode the outputs of a batch depend on every input of it, so the
input Jacobian is that of the whole-batch function, ``J = dF/dZ`` of shape
``(N*C, N*D)`` (C outputs and D inputs per sample). Its spectral norm bounds every
per-sample block ``d f_i / d z_i`` from above. When samples are independent ``J`` is block
diagonal, and one whole-batch product with the same direction for every sample yields
one row (or column) of *every* per-sample Jacobian at once; ``min(C, D)`` such products
give all per-sample Jacobians (:meth:`InputJacobian.per_sample`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from torch.func import jvp, vjp

from normscope.curvature.operator import batched, top_eigenpair
from normscope.data import batches as batch_io
from normscope.data.batches import Inputs
from normscope.errors import ConfigError, ModelError, unknown_name
from normscope.measurement import CostMeter
from normscope.subject import Subject

AUTO = "auto"


@dataclass(frozen=True)
class InputPoint:
    """What the input Jacobian differentiates: ``z`` and the whole-batch map ``z -> f``.

    ``direct`` is True when ``z`` is one of the model's own inputs (``substitute`` then
    gives the inputs with ``z`` replaced), False when it is a module's output.
    """

    z: torch.Tensor
    fn: Callable[[torch.Tensor], torch.Tensor]
    wrt: str
    direct: bool
    substitute: Callable[[torch.Tensor], Inputs] | None


def _replace(inputs: Inputs, key: str, z: torch.Tensor) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return z
    if isinstance(inputs, Mapping):
        return {k: z if str(k) == key else v for k, v in inputs.items()}
    return tuple(z if str(i) == key else v for i, v in enumerate(inputs))


def _first_called_embedding(subject: Subject, inputs: Inputs) -> str | None:
    """The ``nn.Embedding`` the forward pass calls first (a model may hold embeddings it
    never calls itself, such as T5's shared one beside its encoder's)."""
    called: list[str] = []
    names = {id(m): n for n, m in subject.model.named_modules() if isinstance(m, nn.Embedding)}
    hooks = [
        m.register_forward_pre_hook(lambda mod, _args: called.append(names[id(mod)]))
        for m in subject.model.modules()
        if id(m) in names
    ]
    try:
        with torch.no_grad():
            subject.output(subject.theta, inputs)
    finally:
        for h in hooks:
            h.remove()
    return called[0] if called else None


def resolve_wrt(subject: Subject, inputs: Inputs, wrt: str) -> tuple[str, bool]:
    """``(name, direct)``: which input tensor (direct) or module output ``wrt`` means."""
    floating = [n for n, t in batch_io.tensors(inputs) if t.is_floating_point()]
    names = [n for n, _ in batch_io.tensors(inputs)]
    if wrt == AUTO:
        if len(floating) == 1:
            return floating[0], True
        if not floating:
            embedding = _first_called_embedding(subject, inputs)
            if embedding is not None:
                return embedding, False
            raise ConfigError(
                "the inputs are integers (token ids) and the forward pass calls no "
                "nn.Embedding: name the module whose output to differentiate with "
                "wrt='<module name>'."
            )
        raise ConfigError(
            f"the inputs hold several floating tensors ({', '.join(floating)}): choose one "
            "with wrt='<input name>' (or a module name for its output)."
        )
    if wrt in names:
        if wrt not in floating:
            raise ConfigError(
                f"input {wrt!r} is not floating point (ids or a mask): the input Lipschitz "
                "constant needs a continuous input; name an embedding module with wrt=."
            )
        return wrt, True
    modules = dict(subject.model.named_modules())
    if wrt in modules and wrt:
        return wrt, False
    raise unknown_name("input or module (wrt)", wrt, [*names, *(m for m in modules if m)])


def input_point(
    subject: Subject, theta: torch.Tensor, inputs: Inputs, wrt: str = AUTO
) -> InputPoint:
    """The point ``z`` and the map ``z -> f(theta; inputs with z)`` for one batch."""
    name, direct = resolve_wrt(subject, inputs, wrt)
    if direct:
        z = dict(batch_io.tensors(inputs))[name]

        def substitute(new: torch.Tensor) -> Inputs:
            return _replace(inputs, name, new)

        return InputPoint(
            z.detach(),
            lambda new: subject.output(theta, substitute(new)),
            f"input {name!r}",
            True,
            substitute,
        )
    module = subject.model.get_submodule(name)
    z = _module_output(subject, theta, inputs, module, name)

    def through(new: torch.Tensor) -> torch.Tensor:
        handle = module.register_forward_hook(lambda _m, _a, _out: new)
        try:
            return subject.output(theta, inputs)
        finally:
            handle.remove()

    return InputPoint(z, through, f"output of module {name!r}", False, None)


def _module_output(
    subject: Subject, theta: torch.Tensor, inputs: Inputs, module: nn.Module, name: str
) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        with torch.no_grad():
            subject.output(theta, inputs)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise ConfigError(
            f"module {name!r} ran {len(seen)} times in one forward pass: the Lipschitz "
            "constant is taken at the output of a module that runs once; name another with "
            "wrt=."
        )
    if not isinstance(seen[0], torch.Tensor):
        raise ConfigError(
            f"module {name!r} returned a {type(seen[0]).__name__}, not a tensor: name a "
            "module that returns one tensor with wrt=."
        )
    if not seen[0].is_floating_point() or seen[0].shape[0] != batch_io.num_samples(inputs):
        raise ConfigError(
            f"module {name!r} returns {tuple(seen[0].shape)} {seen[0].dtype}: differentiate "
            "a floating output with the samples in dimension 0."
        )
    return seen[0].detach()


class InputJacobian:
    """``J = dF/dZ`` at one batch, applied without forming it (module docstring).

    ``jvp(v)`` takes ``v`` shaped like ``z`` and returns ``J v`` shaped like the outputs;
    ``vjp(u)`` takes an output-shaped ``u`` and returns ``J^T u`` shaped like ``z``. Batched
    variants take a leading dimension of vectors. Products are counted on ``meter`` as
    ``jvp`` / ``vjp``.
    """

    def __init__(
        self,
        subject: Subject,
        inputs: Inputs,
        theta: torch.Tensor | None = None,
        meter: CostMeter | None = None,
        *,
        wrt: str = AUTO,
        point: torch.Tensor | None = None,
    ) -> None:
        self.subject = subject
        self.theta = subject.theta if theta is None else theta
        self.meter = meter if meter is not None else CostMeter()
        self.point = input_point(subject, self.theta, inputs, wrt)
        self.x = self.point.z if point is None else point.detach()

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        return self.point.fn(z)

    @cached_property
    def _linearized(self):
        with self.subject.modes():
            out = vjp(self._map, self.x)
        self.meter.add("forward")
        return out

    @property
    def outputs(self) -> torch.Tensor:
        """``f(theta; z)`` (detached)."""
        return self._linearized[0].detach()

    @property
    def in_dim(self) -> int:
        return self.x.numel()

    @property
    def out_dim(self) -> int:
        return self.outputs.numel()

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` for ``v`` shaped like ``z``: returns an output-shaped tensor."""
        return self.jvp_batched(v.unsqueeze(0))[0]

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for an output-shaped ``u``: returns a tensor shaped like ``z``."""
        return self.vjp_batched(u.unsqueeze(0))[0]

    def jvp_batched(self, vs: torch.Tensor) -> torch.Tensor:
        """``J v`` for each ``v`` in ``vs`` ``(k, *z.shape)``: returns ``(k, *out.shape)``."""
        self.meter.add("jvp", vs.shape[0])
        with self.subject.modes():
            return batched(lambda v: jvp(self._map, (self.x,), (v.to(self.x.dtype),))[1])(vs)

    def vjp_batched(self, us: torch.Tensor) -> torch.Tensor:
        """``J^T u`` for each ``u`` in ``us`` ``(k, *out.shape)``: returns ``(k, *z.shape)``."""
        fn = self._linearized[1]
        self.meter.add("vjp", us.shape[0])
        with self.subject.modes():
            return batched(lambda u: fn(u.to(self.x.dtype))[0])(us)

    def spectral_norm(
        self, *, tol: float = 1e-6, max_iter: int | None = None, seed: int = 0
    ) -> tuple[float, torch.Tensor | None]:
        """``||J||_2`` and a unit right singular vector (shaped like ``z``), by Lanczos.

        Lanczos runs on ``J J^T`` or ``J^T J``, whichever is smaller, in the Subject's
        working dtype. Its top Ritz value never exceeds ``lambda_max``, so the returned
        norm is a lower bound that converges to ``||J||_2`` from below. Returns
        ``(inf, None)`` when the forward pass or a product overflows.
        """
        if not bool(torch.isfinite(self.outputs).all()):
            return math.inf, None
        work = self.subject.work_dtype
        n_out, n_in = self.out_dim, self.in_dim
        out_shape, in_shape = self.outputs.shape, self.x.shape

        def gram_out(us: torch.Tensor) -> torch.Tensor:
            back = self.vjp_batched(us.reshape(-1, *out_shape))
            return self.jvp_batched(back).reshape(us.shape[0], n_out).to(work)

        def gram_in(vs: torch.Tensor) -> torch.Tensor:
            fwd = self.jvp_batched(vs.reshape(-1, *in_shape))
            return self.vjp_batched(fwd).reshape(vs.shape[0], n_in).to(work)

        small_out = n_out <= n_in
        matmat = gram_out if small_out else gram_in
        dim = n_out if small_out else n_in
        top, vector = top_eigenpair(
            matmat,
            dim,
            dtype=work,
            device=self.x.device,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
        )
        if vector is None:
            return math.inf, None
        if small_out:
            vector = self.vjp(vector.reshape(out_shape)).reshape(-1).to(work)
        norm = vector.norm()
        vector = vector / norm if norm > 0 else vector
        return math.sqrt(top), vector.reshape(in_shape)

    def per_sample(self) -> torch.Tensor:
        """All per-sample Jacobians ``d f_i / d z_i`` as ``(N, C, D)``.

        From ``C`` whole-batch vjps or ``D`` jvps, whichever is fewer (``C``, ``D``: the
        output and input elements of one sample). Valid only when samples are
        independent; raises ModelError otherwise, because the whole-batch Jacobian is
        then not block diagonal.
        """
        if self.subject.samples_coupled:
            raise ModelError(
                "per-sample input Jacobians need independent samples, but normalizing with "
                "batch statistics couples them: use spectral_norm() of the whole batch, or "
                "bn_mode='eval'."
            )
        n = self.x.shape[0]
        c, d = self.outputs[0].numel(), self.x[0].numel()
        dtype = self.subject.work_dtype
        if c <= d:
            eye = torch.eye(c, dtype=self.outputs.dtype, device=self.x.device)
            basis = eye.reshape(c, 1, *self.outputs.shape[1:]).expand(c, *self.outputs.shape)
            rows = self.vjp_batched(basis).reshape(c, n, d).to(dtype)
            return rows.transpose(0, 1)
        eye = torch.eye(d, dtype=self.x.dtype, device=self.x.device)
        basis = eye.reshape(d, 1, *self.x.shape[1:]).expand(d, *self.x.shape)
        cols = self.jvp_batched(basis).reshape(d, n, c).to(dtype)
        return cols.permute(1, 2, 0)
