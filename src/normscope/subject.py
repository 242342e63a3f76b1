"""Subject: model + data + loss + batch-norm mode + which parameters.

Every measure sees a network through a Subject: a *functional view*
``theta -> f(theta; x)`` built on :func:`torch.func.functional_call`, where ``theta`` is
the flat vector of the selected parameters and everything else (the other parameters,
the buffers) is read from the model and never written.

Batch norm is evaluated as ``bn_mode`` says:

- ``"train"``: batch statistics. The network is then a function of the whole batch
  (samples are coupled); with ``batch_size`` set, every mini-batch uses its own
  statistics, which is the function SGD trains. Running statistics are never updated:
  batch-norm modules run with ``track_running_stats`` switched off for the call.
- ``"eval"``: running statistics, so samples are independent.

Every other module runs in eval mode (dropout off), so measurements are deterministic.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from normscope.data.dataset import Dataset
from normscope.errors import ConfigError, DataError, ModelError, ShapeError, unknown_name

LOSSES = ("cross_entropy", "mse")
BN_MODES = ("train", "eval")
BnMode = Literal["train", "eval"]


def is_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` normalizes with batch statistics in training mode.

    True for PyTorch's batch-norm layers and for any module that declares
    ``uses_batch_statistics = True`` and follows their protocol (``training``,
    ``track_running_stats``).
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return bool(getattr(module, "uses_batch_statistics", False))


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets of the selected parameters inside the flat vector."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        out, total = [], 0
        for n in self.numels:
            out.append(total)
            total += n
        return tuple(out)

    @property
    def size(self) -> int:
        return sum(self.numels)

    def slice(self, name: str) -> slice:
        """Where parameter ``name`` lives in the flat vector."""
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat vector (or a batch ``(..., P)`` of them) into named tensors."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.numels, dim=-1)
        return {
            n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def mask(self, names: Sequence[str], like: torch.Tensor) -> torch.Tensor:
        """A 0/1 vector selecting the entries of ``names``."""
        m = torch.zeros(self.size, dtype=like.dtype, device=like.device)
        for n in names:
            m[self.slice(n)] = 1
        return m


@dataclass(frozen=True)
class ParamGroup:
    """A named set of parameters (a module's own parameters, or one tensor)."""

    name: str
    params: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    """One evaluation batch: inputs, targets, and its weight ``n_b / N`` in the mean loss."""

    x: torch.Tensor
    y: torch.Tensor | None
    weight: float


class Subject:
    """What a measurement is taken of.

    ``L(theta) = (1/N) sum_i l(f(theta; x_i), y_i)`` over the Subject's N samples, where
    ``l`` is cross-entropy (integer labels) or ``mse`` = ``1/2 ||f - y||^2`` summed over
    outputs (class labels become one-hot targets). With ``batch_size`` the mean is taken
    over mini-batches of consecutive samples, each evaluated as one batch.

    Args:
        model: any ``nn.Module``; it is never modified (mode, buffers, parameters, grads).
        data: a :class:`~normscope.data.Dataset`, or a tuple ``(x, y)`` of tensors.
        loss: ``"cross_entropy"`` or ``"mse"``.
        bn_mode: ``"train"`` (batch statistics) or ``"eval"`` (running statistics).
        batch_size: evaluate in mini-batches of this size (``None``: one batch).
        params: which parameters are differentiated: ``None`` (all trainable), a glob
            pattern (``"*.weight"``), or a list of names or patterns.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
        ...                             torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> s = Subject(model, (x, y), loss="cross_entropy", bn_mode="train")
        >>> s.num_params
        83
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | tuple[torch.Tensor, torch.Tensor],
        loss: str = "cross_entropy",
        bn_mode: BnMode = "train",
        batch_size: int | None = None,
        params: str | Sequence[str] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if loss not in LOSSES:
            raise unknown_name("loss", loss, LOSSES)
        if bn_mode not in BN_MODES:
            raise unknown_name("bn_mode", bn_mode, BN_MODES)
        self.model = model
        self.loss_name = loss
        self.bn_mode: BnMode = bn_mode
        self.layout = self._select_params(params)
        self.params_selection = params
        self.dtype = self._model_dtype()
        self.device = next(iter(model.parameters())).device
        self.data = self._coerce_data(data, loss).to(self.dtype)
        self.batch_size = self._check_batch_size(batch_size)
        self._mode_depth = 0
        self._check_finite()
        self._check_output_shape()
        self._scale_invariant: list[ParamGroup] | None = None

    # ------------------------------------------------------------------ validation
    def _select_params(self, params: str | Sequence[str] | None) -> ParamLayout:
        trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if not trainable:
            raise ModelError(
                "the model has no trainable parameters: set requires_grad=True on the "
                "parameters to measure."
            )
        if params is None:
            chosen = list(trainable)
        else:
            patterns = [params] if isinstance(params, str) else list(params)
            chosen = [n for n in trainable if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
            for p in patterns:
                if not any(fnmatch.fnmatchcase(n, p) for n in trainable):
                    raise unknown_name("parameter (or pattern)", p, trainable)
        return ParamLayout(tuple(chosen), tuple(trainable[n].shape for n in chosen))

    def _model_dtype(self) -> torch.dtype:
        dtypes = {p.dtype for p in self.model.parameters() if p.is_floating_point()}
        if len(dtypes) != 1:
            raise ModelError(
                f"the model mixes parameter dtypes {sorted(map(str, dtypes))}: cast it to one "
                "dtype, e.g. model.double()."
            )
        return dtypes.pop()

    @staticmethod
    def _coerce_data(data: Dataset | tuple, loss: str) -> Dataset:
        if isinstance(data, Dataset):
            out = data
        elif isinstance(data, (tuple, list)) and len(data) == 2:
            x, y = (torch.as_tensor(t) for t in data)
            task = "regression" if y.is_floating_point() else "classification"
            out = Dataset(x, y, task=task, name="tensors")
        else:
            raise DataError(
                "data must be a normscope.data.Dataset or a tuple (x, y) of tensors, got "
                f"{type(data).__name__}."
            )
        if out.y is None:
            raise DataError(
                f"data set {out.name!r} has no targets, but a loss needs them: give labels "
                "(classification) or targets (regression)."
            )
        if loss == "cross_entropy" and out.task != "classification":
            raise DataError(
                "loss 'cross_entropy' needs integer class labels, but the data has float "
                "targets: use loss='mse' for regression."
            )
        return out

    def _check_batch_size(self, batch_size: int | None) -> int | None:
        if batch_size is None:
            return None
        if not 1 <= batch_size <= len(self.data):
            raise ConfigError(
                f"batch_size must lie in [1, {len(self.data)}] (the number of samples), "
                f"got {batch_size}."
            )
        return int(batch_size)

    def _check_finite(self) -> None:
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise ModelError(
                f"non-finite (NaN or inf) values in parameters {bad[:5]}: re-initialize or "
                "load finite weights before measuring."
            )
        if not torch.isfinite(self.data.x).all():
            raise DataError(
                f"data set {self.data.name!r} has NaN or inf inputs: clean or drop them."
            )
        y = self.data.y
        if y.is_floating_point() and not torch.isfinite(y).all():
            raise DataError(
                f"data set {self.data.name!r} has NaN or inf targets: clean or drop them."
            )

    def _check_output_shape(self) -> None:
        n = min(len(self.data), 4)
        x = self.data.x[:n].to(self.device)
        try:
            with torch.no_grad():
                out = self.output(self.theta, x)
        except (RuntimeError, ValueError, TypeError) as err:
            raise ShapeError(
                f"the model cannot take inputs of shape {tuple(self.data.x.shape[1:])} "
                f"from data set {self.data.name!r}: {err}. Reshape the data or change the "
                "model's input layer."
            ) from err
        want = self.target_dim
        if out.ndim != 2 or out.shape[1] != want:
            raise ShapeError(
                f"the model outputs shape {tuple(out.shape)} but loss {self.loss_name!r} on "
                f"data set {self.data.name!r} needs (N, {want}): make the output layer "
                f"produce {want} values per sample."
            )

    # ------------------------------------------------------------------ sizes
    @property
    def num_params(self) -> int:
        return self.layout.size

    @property
    def num_samples(self) -> int:
        return len(self.data)

    @property
    def target_dim(self) -> int:
        """Outputs per sample the loss expects (C)."""
        return self.data.output_dim

    @property
    def has_batch_norm(self) -> bool:
        return any(is_batch_norm(m) for m in self.model.modules())

    @property
    def samples_coupled(self) -> bool:
        """True when sample outputs depend on the whole batch (batch norm, train mode)."""
        return self.bn_mode == "train" and self.has_batch_norm

    def describe(self) -> dict[str, object]:
        """The settings every Measurement records about its Subject."""
        return {
            "bn_mode": self.bn_mode,
            "loss": self.loss_name,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "num_params": self.num_params,
            "params": self.params_selection,
            "dtype": str(self.dtype).removeprefix("torch."),
            "data": self.data.name,
        }

    # ------------------------------------------------------------------ functional view
    @property
    def theta(self) -> torch.Tensor:
        """The selected parameters as one flat, detached vector (a copy)."""
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.layout.names]).clone()

    def param_groups(self) -> list[ParamGroup]:
        """The selected parameters grouped by the module that owns them (per-layer pieces)."""
        groups: dict[str, list[str]] = {}
        for name in self.layout.names:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            # weight-norm style parametrizations belong to the module that holds them
            owner = owner.split(".parametrizations.")[0]
            groups.setdefault(owner, []).append(name)
        return [ParamGroup(k, tuple(v)) for k, v in groups.items()]

    @contextlib.contextmanager
    def modes(self) -> Iterator[None]:
        """Put the model in the Subject's evaluation modes, and restore them on exit.

        Re-entrant: nested uses toggle the modules only once.
        """
        if self._mode_depth > 0:
            self._mode_depth += 1
            try:
                yield
            finally:
                self._mode_depth -= 1
            return
        saved = [
            (m, m.training, getattr(m, "track_running_stats", None)) for m in self.model.modules()
        ]
        try:
            for m in self.model.modules():
                m.training = False
                if self.bn_mode == "train" and is_batch_norm(m):
                    m.training = True
                    m.track_running_stats = False
            self._mode_depth = 1
            yield
        finally:
            self._mode_depth = 0
            for m, training, track in saved:
                m.training = training
                if track is not None:
                    m.track_running_stats = track

    def output(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f(theta; x)`` for the batch ``x`` (one batch: batch statistics span all of x)."""
        with self.modes():
            return functional_call(self.model, self.layout.unflatten(theta), (x,))

    def batches(self) -> list[Batch]:
        """The evaluation batches: all samples at once, or consecutive mini-batches."""
        x, y = self.data.x.to(self.device), self.data.y.to(self.device)
        n = len(x)
        size = self.batch_size or n
        return [
            Batch(x[i : i + size], y[i : i + size], min(size, n - i) / n) for i in range(0, n, size)
        ]

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets in output space: one-hot for class labels under ``mse``."""
        if self.loss_name == "mse" and not y.is_floating_point():
            return F.one_hot(y, self.target_dim).to(self.dtype)
        if y.is_floating_point() and y.ndim == 1:
            return y.unsqueeze(1)
        return y

    def loss_of(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over samples of the per-sample loss of outputs ``out`` (N, C)."""
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(out, y)
        return 0.5 * (out - self.targets(y)).pow(2).sum(dim=1).mean()

    def loss(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """``L(theta)``: the weighted mean of the per-batch mean losses."""
        theta = self.theta if theta is None else theta
        with self.modes():
            return sum(
                b.weight * self.loss_of(self.output(theta, b.x), b.y) for b in self.batches()
            )

    def batch_norm_in_epsilon_regime(self, ratio: float = 10.0) -> list[str]:
        """Batch-norm layers that do not normalize on this data: the epsilon regime.

        A batch-norm layer divides by ``sqrt(var + eps)``; where a channel's batch variance
        (batch mean square for layers without mean subtraction) on the first batch is
        below ``ratio * eps``, the layer's gain is set by ``eps``, about
        ``1/sqrt(eps)``, not by the data. Returns the names of such layers (empty outside
        batch-norm train mode, where batch statistics are not used).
        """
        if not self.samples_coupled:
            return []
        found: list[str] = []

        def check(name: str, module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach()
            per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
            centred = getattr(module, "mean_subtraction", True)
            spread = (
                per_channel.var(dim=1, unbiased=False)
                if centred
                else per_channel.pow(2).mean(dim=1)
            )
            if bool((spread < ratio * module.eps).any()):
                found.append(name)

        hooks = [
            m.register_forward_pre_hook(lambda mod, inp, name=name: check(name, mod, inp))
            for name, m in self.model.named_modules()
            if is_batch_norm(m) and isinstance(getattr(m, "eps", None), float)
        ]
        try:
            with torch.no_grad():
                self.output(self.theta, self.batches()[0].x)
        finally:
            for h in hooks:
                h.remove()
        return found

    # ------------------------------------------------------------------ scale invariance
    def scale_invariant_groups(self, rtol: float | None = None) -> list[ParamGroup]:
        """Parameter groups ``w`` with ``f(c w) = f(w)`` for ``c > 0`` (lyu2022).

        Detected numerically on the first batch: each module's own parameters, and then
        each single remaining tensor, are scaled by ``c = 2`` and ``c = 1/2``; a group is
        scale invariant when the outputs change by less than ``rtol`` relative (default
        1e-5 in float32, 1e-9 in float64). The normalization layers' epsilon is set to
        1e-30 during the test (PyTorch refuses 0), because epsilon is what makes
        invariance approximate; groups
        that are all zeros are skipped, since scaling them changes nothing trivially.
        Typical finds: weights and biases that feed a batch norm in train mode or a
        layer norm; ``weight_v`` of weight normalization.
        """
        if rtol is None and self._scale_invariant is not None:
            return self._scale_invariant
        tol = rtol if rtol is not None else (1e-9 if self.dtype == torch.float64 else 1e-5)
        batch = self.batches()[0]
        theta = self.theta
        with torch.no_grad(), self.modes(), _tiny_norm_epsilon(self.model):
            base = self.output(theta, batch.x)

            def invariant(names: Sequence[str]) -> bool:
                mask = self.layout.mask(names, theta)
                if not (theta * mask).any():
                    return False
                for c in (2.0, 0.5):
                    change = (self.output(theta * (1 + (c - 1) * mask), batch.x) - base).norm()
                    if not change <= tol * base.norm():
                        return False
                return True

            found = [g for g in self.param_groups() if invariant(g.params)]
            covered = {n for g in found for n in g.params}
            found += [
                ParamGroup(n, (n,))
                for n in self.layout.names
                if n not in covered and invariant([n])
            ]
        if rtol is None:
            self._scale_invariant = found
        return found


@contextlib.contextmanager
def _tiny_norm_epsilon(model: nn.Module) -> Iterator[None]:
    """Set every float ``eps`` of the model's modules to 1e-30, and restore it on exit."""
    saved = [(m, m.eps) for m in model.modules() if isinstance(getattr(m, "eps", None), float)]
    try:
        for m, _ in saved:
            m.eps = 1e-30
        yield
    finally:
        for m, eps in saved:
            m.eps = eps
