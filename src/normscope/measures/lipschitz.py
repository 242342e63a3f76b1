"""Input and parameter Lipschitz constants, with lower and upper bounds (hiddenpower2025).

Without normalization the Lipschitz constants of a net with respect to its inputs and
parameters can grow like a product of per-layer gains, exponentially in depth; each
normalization layer whose input has standard deviation sigma > 1 divides them by sigma.
``input_lipschitz`` brackets the input constant between a measured Jacobian norm (lower
bound) and a product of per-layer constants (upper bound); ``param_lipschitz`` measures the
spectral norm of the parameter Jacobian and the loss gradient, per layer. Products are
carried in log space (``theory.hiddenpower.product_bound``), so any depth gives a finite
log or ``inf`` with a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import grad, jvp, vjp
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from normscope.curvature.input_jacobian import InputJacobian, input_point
from normscope.curvature.jacobian import OutputJacobian
from normscope.curvature.operator import top_eigenpair
from normscope.data import batches as batch_io
from normscope.data.batches import Inputs
from normscope.linalg import lanczos
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import (
    COUNT,
    POSITIVE,
    SEED,
    TOL,
    Flag,
    Integer,
    Name,
    Optional,
)
from normscope.measures.registry import register
from normscope.measures.signal import trace_layers
from normscope.nets.activations import ShapedActivation, Sin
from normscope.nets.norms import BatchRMSNorm, ChannelRMSNorm, DyT, TokenBatchNorm
from normscope.subject import Subject
from normscope.theory.hiddenpower import normalization_jacobian_norm, product_bound

# Largest |derivative| of each activation (max over a fine grid, rounded up in the last digit).
_ACTIVATION_LIPSCHITZ: dict[type, float] = {
    nn.Identity: 1.0,
    nn.Flatten: 1.0,
    nn.Unflatten: 1.0,
    nn.Dropout: 1.0,
    nn.ReLU: 1.0,
    nn.ReLU6: 1.0,
    nn.Tanh: 1.0,
    nn.Hardtanh: 1.0,
    nn.Softplus: 1.0,
    nn.ELU: 1.0,
    Sin: 1.0,
    nn.Sigmoid: 0.25,
    nn.SiLU: 1.09984,
    nn.Mish: 1.08850,
}
_GELU_LIPSCHITZ = {"none": 1.12891, "tanh": 1.12900}
CERTIFIED, LOCAL, UNKNOWN = "certified", "local", "unknown"


@dataclass(frozen=True)
class LayerBound:
    """log of a layer's Lipschitz constant and how it was obtained.

    ``certified``: a constant valid for all inputs. ``local``: the largest spectral norm
    of the layer's Jacobian at the inputs it saw (normalization with per-call statistics).
    ``unknown``: the layer type is not understood (``log_value`` is nan).
    """

    name: str
    kind: str
    status: str
    log_value: float


# ----------------------------------------------------------------------------- layer bounds
def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _log_linear(module: nn.Linear) -> float:
    weight = module.weight.detach().to(torch.float64)
    return _log(float(torch.linalg.matrix_norm(weight, ord=2)))


def _log_conv(module: _ConvNd, x: torch.Tensor, tol: float, seed: int) -> float:
    """log ||A||_2 of the conv operator on one sample, by Lanczos on A^T A (conv, then its vjp)."""
    weight = module.weight.detach()
    shape = x.shape[1:]

    def gram(vs: torch.Tensor) -> torch.Tensor:
        def apply(v: torch.Tensor) -> torch.Tensor:
            out, back = vjp(lambda u: module._conv_forward(u, weight, None), v.reshape(1, *shape))
            return back(out)[0].reshape(-1)

        return torch.stack([apply(v) for v in vs])

    res = lanczos(
        lambda v: gram(v.unsqueeze(0))[0],
        math.prod(shape),
        matmat=gram,
        tol=tol,
        seed=seed,
        dtype=x.dtype,
        device=x.device,
    )
    return 0.5 * _log(max(float(res.eigenvalues[-1]), 0.0))


def _log_activation(module: nn.Module) -> float | None:
    if isinstance(module, ShapedActivation):
        inner = _log_activation(module.activation)
        return None if inner is None else _log(abs(module.gain)) + inner
    if isinstance(module, nn.GELU):
        return math.log(_GELU_LIPSCHITZ[module.approximate])
    if isinstance(module, nn.LeakyReLU):
        return math.log(max(1.0, abs(module.negative_slope)))
    if isinstance(module, nn.ELU):
        return math.log(max(1.0, module.alpha))
    for kind, value in _ACTIVATION_LIPSCHITZ.items():
        if type(module) is kind or isinstance(module, kind):
            return math.log(value)
    return None


def _max_abs(weight: torch.Tensor | None) -> float:
    return 1.0 if weight is None else float(weight.detach().abs().max())


def _rows_norm(rows: torch.Tensor, eps: float, centered: bool, gains=None) -> float:
    """Largest ``gain_r`` times the Jacobian spectral norm of normalizing row r (hiddenpower2025).

    Centered rows: (1/sigma)(I - 11^T/n - z z^T/n), of norm 1/sigma for n >= 3, taken from
    ``theory.hiddenpower.normalization_jacobian_norm`` at the worst row. RMS rows (no mean
    subtraction): (1/s)(I - z z^T/n), s = sqrt(mean x^2 + eps), norm at most 1/s.
    """
    r = rows.detach().to(torch.float64)
    spread = r.var(dim=1, unbiased=False) if centered else r.pow(2).mean(dim=1)
    g = torch.ones(len(r), dtype=torch.float64) if gains is None else gains.to(torch.float64)
    bound = g / torch.sqrt(spread + eps)
    worst = int(bound.argmax())
    if centered and r.shape[1] >= 3 and float(g[worst]) > 0:
        exact = normalization_jacobian_norm(r[worst].cpu().numpy(), eps=eps)
        return float(g[worst]) * exact
    return float(bound[worst])


def _channel_rows(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    moved = x.movedim(channel_dim, 0)
    return moved.reshape(moved.shape[0], -1)


def _batch_norm_uses_batch_stats(module: _BatchNorm) -> bool:
    return module.training or module.running_var is None


def _log_batch_norm(module: _BatchNorm, inputs: list[torch.Tensor]) -> tuple[float, str]:
    """Eval: the affine map gamma/sqrt(running_var + eps). Train: max_c |gamma_c|/sigma_c."""
    gamma = module.weight.detach().abs() if module.weight is not None else None
    if not _batch_norm_uses_batch_stats(module):
        scale = 1.0 / torch.sqrt(module.running_var.detach().to(torch.float64) + module.eps)
        scale = scale if gamma is None else scale * gamma.to(torch.float64)
        return _log(float(scale.max())), CERTIFIED
    centered = not isinstance(module, BatchRMSNorm) or module.mean_subtraction
    channel_dim = -1 if isinstance(module, TokenBatchNorm) else 1
    worst = max(
        _rows_norm(_channel_rows(x, channel_dim), module.eps, centered, gamma) for x in inputs
    )
    return _log(worst), LOCAL


def _log_sample_norm(module: nn.Module, inputs: list[torch.Tensor]) -> float | None:
    """Per-sample normalizations: max |gamma| times the worst row's 1/sigma."""
    if isinstance(module, nn.LayerNorm | nn.RMSNorm):
        width = math.prod(module.normalized_shape)
        eps = module.eps if module.eps is not None else torch.finfo(inputs[0].dtype).eps
        centered = isinstance(module, nn.LayerNorm)
        rows = [x.reshape(-1, width) for x in inputs]
    elif isinstance(module, nn.GroupNorm):
        eps, centered = module.eps, True
        rows = [x.reshape(x.shape[0] * module.num_groups, -1) for x in inputs]
    elif isinstance(module, ChannelRMSNorm):
        eps, centered = module.eps, False
        rows = [x.reshape(x.shape[0], -1) for x in inputs]
    elif isinstance(module, _InstanceNorm) and (module.training or not module.track_running_stats):
        eps, centered = module.eps, True
        rows = [x.reshape(x.shape[0] * x.shape[1], -1) for x in inputs]
    else:
        return None
    worst = max(_rows_norm(r, eps, centered) for r in rows)
    return _log(_max_abs(getattr(module, "weight", None)) * worst)


def layer_bound(
    name: str, module: nn.Module, inputs: list[torch.Tensor], *, tol: float, seed: int
) -> LayerBound:
    """The Lipschitz bound of one layer, given its inputs at every evaluated point."""
    kind = type(module).__name__
    if isinstance(module, nn.Linear):
        return LayerBound(name, kind, CERTIFIED, _log_linear(module))
    if isinstance(module, _ConvNd) and not module.transposed:
        return LayerBound(name, kind, CERTIFIED, _log_conv(module, inputs[0], tol, seed))
    if isinstance(module, _BatchNorm):
        value, status = _log_batch_norm(module, inputs)
        return LayerBound(name, kind, status, value)
    if isinstance(module, DyT):
        value = _log(abs(float(module.alpha)) * _max_abs(module.weight))
        return LayerBound(name, kind, CERTIFIED, value)
    local = _log_sample_norm(module, inputs)
    if local is not None:
        return LayerBound(name, kind, LOCAL, local)
    activation = _log_activation(module)
    if activation is not None:
        return LayerBound(name, kind, CERTIFIED, activation)
    if isinstance(module, _InstanceNorm):
        scale = 1.0 / torch.sqrt(module.running_var.detach().to(torch.float64) + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach().abs().to(torch.float64)
        return LayerBound(name, kind, CERTIFIED, _log(float(scale.max())))
    return LayerBound(name, kind, UNKNOWN, math.nan)


# ----------------------------------------------------------------------------- lower bound
MAX_EXACT_PRODUCTS = 256
"""Most whole-batch products spent on exact per-sample Jacobians (per chunk of samples)."""


def _per_sample_products(subject: Subject, z: torch.Tensor) -> int:
    return min(math.prod(subject.output_shape), z[0].numel())


@dataclass
class _Lower:
    log_value: float
    log_at_data: float
    points: list[tuple[Inputs, torch.Tensor]]
    direct: bool
    wrt: str
    notes: list[str]


def _norms_at(
    subject: Subject,
    theta: torch.Tensor,
    inputs: Inputs,
    z: torch.Tensor,
    meter: CostMeter,
    *,
    wrt: str,
    tol,
    max_iter,
    seed,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Jacobian spectral norms at ``z`` and top right singular directions (shaped like z).

    Coupled samples: one whole-batch norm (a 1-element tensor). Otherwise: the norm of
    every per-sample Jacobian, computed exactly from min(C, D) whole-batch products; where
    that is more than ``MAX_EXACT_PRODUCTS`` (a language model: C = tokens x vocabulary),
    one whole-batch norm by Lanczos, which for independent samples (a block-diagonal
    Jacobian) is the largest per-sample norm.
    """
    if subject.samples_coupled or _per_sample_products(subject, z) > MAX_EXACT_PRODUCTS:
        ij = InputJacobian(subject, inputs, theta, meter, wrt=wrt, point=z)
        if not bool(torch.isfinite(ij.outputs).all()):
            return torch.tensor([math.inf], dtype=torch.float64), None
        norm, vector = ij.spectral_norm(tol=tol, max_iter=max_iter, seed=seed)
        return torch.tensor([norm], dtype=torch.float64), vector
    # chunks of samples keep the (chunk, C, D) block of per-sample Jacobians near 2^24 numbers
    per_row = math.prod(subject.output_shape) * z[0].numel()
    chunk = max(1, 2**24 // per_row)
    norms, vectors = [], []
    for start in range(0, len(z), chunk):
        stop = min(start + chunk, len(z))
        part = batch_io.slice_inputs(inputs, start, stop)
        ij = InputJacobian(subject, part, theta, meter, wrt=wrt, point=z[start:stop])
        jac = ij.per_sample().to(torch.float64)
        if not bool(torch.isfinite(jac).all()):
            return torch.full((len(z),), math.inf, dtype=torch.float64), None
        _, sv, vh = torch.linalg.svd(jac, full_matrices=False)
        norms.append(sv[:, 0])
        vectors.append(vh[:, 0, :])
    return torch.cat(norms), torch.cat(vectors).to(subject.work_dtype).reshape(z.shape)


def _ascent_step(
    subject: Subject,
    fn,
    z: torch.Tensor,
    z0: torch.Tensor,
    direction: torch.Tensor,
    step: float,
    radius: torch.Tensor,
) -> torch.Tensor:
    """One normalized gradient step on ||J(z) v||^2, projected to the balls around z0."""

    def objective(u: torch.Tensor) -> torch.Tensor:
        return jvp(fn, (u,), (direction.to(u.dtype),))[1].pow(2).sum()

    with subject.modes():
        g = grad(objective)(z).reshape(len(z), -1)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    moved = z.reshape(len(z), -1) + step * radius * g
    offset = moved - z0.reshape(len(z), -1)
    shrink = (radius / offset.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp(max=1.0)
    return (z0.reshape(len(z), -1) + offset * shrink).reshape(z.shape)


def _lower_bound(
    subject: Subject, theta, meter, *, wrt, tol, max_iter, seed, ascent_steps, ascent_radius
) -> _Lower:
    best, at_data, points, notes = 0.0, 0.0, [], []
    point = None
    options = {"wrt": wrt, "tol": tol, "max_iter": max_iter, "seed": seed}
    for b in subject.batches():
        point = input_point(subject, theta, b.inputs, wrt)
        z0 = point.z
        norms, direction = _norms_at(subject, theta, b.inputs, z0, meter, **options)
        at_data = max(at_data, float(norms.max()))
        points.append((point.substitute(z0) if point.direct else b.inputs, z0))
        z = z0
        radius = ascent_radius * z0.reshape(len(z0), -1).norm(dim=1, keepdim=True)
        for _ in range(ascent_steps if direction is not None else 0):
            z = _ascent_step(subject, point.fn, z, z0, direction, 2.5 / ascent_steps, radius)
            step_norms, step_dir = _norms_at(subject, theta, b.inputs, z, meter, **options)
            meter.add("backward")
            if step_dir is None:
                notes.append("projected ascent stopped: the forward pass overflowed")
                break
            points.append((point.substitute(z) if point.direct else b.inputs, z))
            norms, direction = torch.maximum(norms, step_norms), step_dir
        best = max(best, float(norms.max()))
    if math.isinf(best):
        notes.append(
            "lower bound is inf: the forward pass or the Jacobian overflowed "
            f"{str(subject.dtype).removeprefix('torch.')}"
        )
    if best == 0.0:
        notes.append(
            "lower bound is 0 (log -inf): the input Jacobian vanished at every point, "
            "from saturated or dead units or underflow"
        )
    return _Lower(_log(best), _log(at_data), points, point.direct, point.wrt, notes)


def _jacobian_kind(subject: Subject, lower: _Lower) -> str:
    if subject.samples_coupled:
        return "whole_batch"
    z = lower.points[0][1]
    return (
        "block_diagonal" if _per_sample_products(subject, z) > MAX_EXACT_PRODUCTS else "per_sample"
    )


# ----------------------------------------------------------------------------- upper bound
def _upper_bound(
    subject: Subject, theta: torch.Tensor, lower: _Lower, *, tol: float, seed: int
) -> tuple[list[LayerBound] | None, list[str]]:
    """Per-layer bounds along the chain, or None (with a note) when no chain is found."""
    if not lower.direct:
        return None, [
            f"upper bound not certified: the constant is taken with respect to the "
            f"{lower.wrt}, not an input the model's first layer takes; only the lower bound "
            "is reported"
        ]
    traces = [trace_layers(subject, theta, inputs, chain_input=z) for inputs, z in lower.points]
    if not traces[0].is_chain:
        return None, [
            "upper bound not certified: the layer order is not a plain chain (residual "
            "connections, functional ops between modules, or reused modules); only the "
            "lower bound is reported"
        ]
    bounds = []
    with subject.modes():  # which statistics a norm layer uses depends on the modes
        for k, call in enumerate(traces[0].calls):
            inputs = [t.calls[k].input for t in traces]
            bounds.append(layer_bound(call.name, call.module, inputs, tol=tol, seed=seed))
    unknown = [b.name for b in bounds if b.status == UNKNOWN]
    local = [b.name for b in bounds if b.status == LOCAL]
    notes = []
    if unknown:
        notes.append(f"upper bound unavailable: no Lipschitz constant for layers {_few(unknown)}")
    if local:
        notes.append(
            f"layers {_few(local)} cannot be certified globally (normalization with statistics of "
            "their input); they are bounded by their Jacobian norm 1/sigma (hiddenpower2025) "
            "at the evaluated points, so the upper bound holds at those points"
        )
    return bounds, notes


def _few(names: list[str], limit: int = 6) -> str:
    """Names for a note: all of them, or the first ``limit`` and how many there are."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} layers)"


def _status(bounds: list[LayerBound] | None) -> str:
    if bounds is None or any(b.status == UNKNOWN for b in bounds):
        return "unavailable"
    return LOCAL if any(b.status == LOCAL for b in bounds) else CERTIFIED


def _exp(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else math.inf


@register(
    "input_lipschitz",
    family="lipschitz",
    paper="hiddenpower2025",
    needs_labels=False,
    quick={"ascent_steps": 1, "tol": 1e-4},
    options={
        "wrt": Name(),
        "tol": TOL,
        "max_iter": Optional(COUNT),
        "ascent_steps": Integer(low=0),
        "ascent_radius": POSITIVE,
        "seed": SEED,
    },
)
def input_lipschitz(
    subject: Subject,
    *,
    wrt: str = "auto",
    tol: float = 1e-6,
    max_iter: int | None = None,
    ascent_steps: int = 0,
    ascent_radius: float = 0.1,
    seed: int = 0,
) -> Measurement:
    """Input Lipschitz constant: measured lower bound, product upper bound (hiddenpower2025).

    The input ``x`` is ``wrt``: ``"auto"`` takes the model's one floating input, or, for a
    model fed integer token ids, the output of its first ``nn.Embedding`` (the token
    embeddings: the constant is then that of the network above its embedding); an input
    name (a mapping key, or ``"0"``, ``"1"`` for positional inputs) or a module name
    chooses another. What is differentiated depends on whether samples are coupled:

    - samples independent (eval mode, or no batch statistics): the per-sample Jacobians
      J_i = d f(x_i) / d x_i, all obtained exactly from min(C, D) whole-batch products (the
      whole-batch Jacobian is block diagonal). Lower bound: max_i ||J_i||_2.
    - batch statistics (batch norm in train mode, or without running statistics): the
      whole-batch map F(X) = f(theta; X), X (N x D), whose Jacobian dF/dX (N C x N D)
      couples samples; its spectral norm, by Lanczos on J J^T or J^T J, bounds every
      per-sample block d f_i / d x_i. Lower bound: max over evaluation batches of
      ||dF/dX||_2.

    With ``ascent_steps > 0`` the lower bound is sharpened by projected gradient ascent
    on ||J(x) v||^2 (v the current top right singular vector) inside the balls
    ||x_i - x0_i|| <= ascent_radius ||x0_i|| around the data; the largest norm seen
    anywhere is kept.

    Upper bound, for a net that is a plain chain of layers (checked on the forward
    trace): the product of per-layer constants, in log space: linear layers ||W||_2
    (exact SVD), convolutions ||A||_2 of the conv operator (Lanczos on A^T A through
    conv and its transpose, to ``tol``), activations their Lipschitz constants (relu,
    tanh, sin, identity 1; gelu 1.1289; shaped phi(g h): |g| Lip(phi)), batch norm in
    eval mode max |gamma| / sqrt(running_var + eps). Layers with per-call statistics
    (batch norm in train mode, layer/RMS/group/instance norm) are not globally Lipschitz
    with a certified constant; they are bounded locally by the largest norm of their
    Jacobian (gamma/sigma)(I - 11^T/n - z z^T/n), i.e. max |gamma| / sigma, over the
    inputs they saw at the evaluated points (data and ascent iterates). The upper bound
    is then valid at those points, and still brackets the lower bound.

    Value: the lower bound. Details: lower_bound, upper_bound, log_lower, log_upper,
    log_gap = log_upper - log_lower, upper_status (certified / local / unavailable), the
    per-layer names, kinds, statuses and log constants, and log_lower_at_data (before
    ascent). When no upper bound is available, upper_bound is inf with a note.
    """
    meter = CostMeter()
    theta = subject.theta
    lower = _lower_bound(
        subject,
        theta,
        meter,
        wrt=wrt,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        ascent_steps=ascent_steps,
        ascent_radius=ascent_radius,
    )
    bounds, upper_notes = _upper_bound(subject, theta, lower, tol=tol, seed=seed)
    meter.add("forward", len(lower.points))
    status = _status(bounds)
    log_upper = math.inf if status == "unavailable" else product_bound(b.log_value for b in bounds)
    jacobian = _jacobian_kind(subject, lower)
    notes = [
        f"with respect to the {lower.wrt}",
        {
            "per_sample": "per-sample Jacobians (samples independent)",
            "whole_batch": "whole-batch Jacobian dF/dX (batch statistics couple the samples)",
            "block_diagonal": "whole-batch Jacobian of independent samples by Lanczos: its "
            "norm is the largest per-sample norm (per-sample Jacobians would take "
            f"over {MAX_EXACT_PRODUCTS} products)",
        }[jacobian],
        *lower.notes,
        *upper_notes,
    ]
    if status != "unavailable" and math.isinf(log_upper) and log_upper > 0:
        notes.append("upper bound is inf: a layer constant is infinite")
    details = {
        "lower_bound": _exp(lower.log_value),
        "upper_bound": _exp(log_upper),
        "log_lower": lower.log_value,
        "log_upper": log_upper,
        "log_gap": log_upper - lower.log_value
        if math.isfinite(log_upper) and math.isfinite(lower.log_value)
        else math.inf,
        "log_lower_at_data": lower.log_at_data,
        "upper_status": status,
        "layer_names": [b.name for b in bounds or []],
        "layer_kinds": [b.kind for b in bounds or []],
        "layer_status": [b.status for b in bounds or []],
        "layer_log_lipschitz": np.array([b.log_value for b in bounds or []]),
        "uncertified_layers": [b.name for b in bounds or [] if b.status != CERTIFIED],
        "jacobian": jacobian,
        "wrt": lower.wrt,
    }
    return Measurement("input_lipschitz", _exp(lower.log_value), details, meter.cost(), {}, notes)


# ----------------------------------------------------------------------------- parameters
def _jacobian_norm(jac: OutputJacobian, mask: torch.Tensor | None, *, tol, max_iter, seed) -> float:
    """||J M||_2 = sqrt(lambda_max(J M J^T)) by Lanczos on the D-dim Gram (M a 0/1 mask)."""
    dim = jac.out_dim

    def gram(us: torch.Tensor) -> torch.Tensor:
        back = jac.vjp_batched(us)
        back = back if mask is None else back * mask
        return jac.jvp_batched(back)

    top, _ = top_eigenpair(
        gram,
        dim,
        dtype=jac.dtype,
        device=jac.theta.device,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
    )
    return math.sqrt(top)


def _loss_gradient(subject: Subject, theta: torch.Tensor, meter: CostMeter) -> torch.Tensor:
    meter.add("backward")
    with subject.modes():
        return grad(subject.loss)(theta).detach()


@register(
    "param_lipschitz",
    family="lipschitz",
    paper="hiddenpower2025",
    needs_labels=False,
    quick={"tol": 1e-4, "per_layer": True},
    options={"tol": TOL, "max_iter": Optional(COUNT), "per_layer": Flag(), "seed": SEED},
)
def param_lipschitz(
    subject: Subject,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    per_layer: bool = True,
    seed: int = 0,
) -> Measurement:
    """Parameter Lipschitz constant ||J||_2 of the whole-batch output map (hiddenpower2025).

    J = d f(theta; X) / d theta (N C x P) of the Subject's whole-batch outputs (batch
    statistics in train mode, stacked mini-batches with ``batch_size``);
    ||J||_2 = sqrt(lambda_max(J J^T)) by Lanczos on the N C-dimensional Gram matrix
    through ``OutputJacobian`` products. Also the loss gradient norm ||grad L(theta)||.
    With ``per_layer``: for every parameter group (the parameters a module owns),
    ||J_g||_2 of the group's columns and ||grad_g L||.

    Value: ||J||_2. Details: jacobian_norm, log_jacobian_norm, grad_norm, log_grad_norm,
    group_names, group_jacobian_norms, group_grad_norms. Overflow gives inf with a note.
    """
    meter = CostMeter()
    jac = OutputJacobian(subject, meter)
    theta = jac.theta
    notes: list[str] = []
    finite = jac.outputs_finite
    norm = _jacobian_norm(jac, None, tol=tol, max_iter=max_iter, seed=seed) if finite else math.inf
    if subject.labelled:
        gradient = _loss_gradient(subject, theta, meter)
        grad_norm = float(gradient.to(torch.float64).norm())
    else:
        gradient, grad_norm = torch.full_like(theta, math.nan), math.nan
        notes.append("no targets: the loss gradient norms are nan")
    if not finite or math.isinf(norm):
        notes.append("Jacobian norm is inf: the forward pass or a product overflowed")
    if math.isinf(grad_norm) or (subject.labelled and math.isnan(grad_norm)):
        notes.append("loss gradient overflowed: its norm is reported as inf")
        grad_norm = math.inf
    groups = subject.param_groups() if per_layer else []
    group_j, group_g = [], []
    for g in groups:
        mask = subject.layout.mask(g.params, theta)
        group_j.append(
            _jacobian_norm(jac, mask, tol=tol, max_iter=max_iter, seed=seed)
            if finite and math.isfinite(norm)
            else math.inf
        )
        value = float((gradient * mask).to(torch.float64).norm())
        group_g.append(value if math.isfinite(value) or not subject.labelled else math.inf)
    details = {
        "jacobian_norm": norm,
        "log_jacobian_norm": _log(norm) if math.isfinite(norm) else math.inf,
        "grad_norm": grad_norm,
        "log_grad_norm": _log(grad_norm) if math.isfinite(grad_norm) else grad_norm,
        "group_names": [g.name for g in groups],
        "group_jacobian_norms": np.array(group_j),
        "group_grad_norms": np.array(group_g),
    }
    return Measurement("param_lipschitz", norm, details, meter.cost(), {}, notes)
