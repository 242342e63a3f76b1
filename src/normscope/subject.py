"""Subject: model + data + loss + batch-norm mode + which parameters.

Every measure sees a network through a Subject: a *functional view*
``theta -> f(theta; inputs)`` built on :func:`torch.func.functional_call`, where ``theta``
is the flat vector of the selected parameters and everything else (the other parameters,
the buffers) is read from the model and never written.

The Subject takes what PyTorch users have:

- *models*: any ``nn.Module``; its output may be a tensor, a tuple or list (the first
  element is used), a mapping or an object with ``logits`` (a Hugging Face
  ``ModelOutput``), or anything ``output_fn`` turns into a tensor;
- *inputs*: a tensor, a tuple of tensors (positional arguments) or a mapping (keyword
  arguments: ``input_ids``, ``attention_mask`` ...); integer and boolean inputs are never
  cast, floating ones follow the model's dtype;
- *data*: a :class:`~normscope.data.Dataset`, ``(inputs, targets)``, a DataLoader or any
  re-iterable of batches (:mod:`normscope.data.batches`), read one batch at a time in a
  fixed order;
- *losses*: ``"cross_entropy"`` (``ignore_index`` masked out), ``"mse"`` or any callable
  ``loss_fn(output, target)`` (:mod:`normscope.losses`).

The risk is ``L(theta) = sum_b (c_b / c) L_b(theta)``: the mean over all ``c`` counted
loss terms (samples, or tokens of a language model), which is the weighted mean of the
per-batch mean losses ``L_b``; with one batch it is just ``L_b``.

Batch statistics: with ``bn_mode="train"`` batch norm is evaluated with the statistics of
the batch, so the network is a function of the whole batch (samples are *coupled*);
running statistics are never updated (batch-norm modules run with
``track_running_stats`` switched off for the call). With ``bn_mode="eval"`` running
statistics are used, except in batch norm built without them, which normalizes with the
batch in every mode. Samples count as coupled when any module uses batch statistics in
the mode it runs in, and also when a forward pass shows it (changing one sample's inputs
changes another sample's output), so that no measure treats a coupled net per sample.
Every other module runs in eval mode (dropout off), and attention runs on PyTorch's
math kernel with the fused transformer fast path off, the composite operations whose
derivatives of every order and direction exist, so measurements are deterministic and
differentiable twice.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from normscope.data import batches as batch_io
from normscope.data.batches import Inputs
from normscope.data.dataset import Dataset
from normscope.distributed.group import Group, fingerprint, replicated, sum_over_ranks
from normscope.errors import (
    ConfigError,
    DataError,
    ModelError,
    NormscopeError,
    ShapeError,
    unknown_name,
)
from normscope.losses import DEFAULT_IGNORE_INDEX, CrossEntropy, Loss, resolve_loss

BN_MODES = ("train", "eval")
BnMode = Literal["train", "eval"]
HALF_DTYPES = (torch.float16, torch.bfloat16)


def is_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` normalizes with batch statistics in training mode.

    True for PyTorch's batch-norm layers and for any module that declares
    ``uses_batch_statistics = True`` and follows their protocol (``training``,
    ``track_running_stats``, ``running_mean`` / ``running_var``, which are None when the
    module keeps no running statistics and so normalizes with the batch in every mode).
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return bool(getattr(module, "uses_batch_statistics", False))


def has_running_statistics(module: nn.Module) -> bool:
    """Whether a batch-norm-like module keeps running statistics it can use in eval mode."""
    return (
        getattr(module, "running_mean", None) is not None
        or getattr(module, "running_var", None) is not None
    )


def uses_batch_statistics(module: nn.Module, bn_mode: str) -> bool:
    """Whether ``module`` normalizes with batch statistics when a Subject runs it in ``bn_mode``."""
    if not is_batch_norm(module):
        return False
    return bn_mode == "train" or not has_running_statistics(module)


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
    """One evaluation batch on the model's device.

    ``inputs`` as the model takes them, ``targets`` (None for unlabelled data), ``size``
    its samples, and ``weight = c_b / c``: its counted loss terms over all counted terms,
    its share of the data-set mean (``n_b / N`` when every sample is one term).
    """

    inputs: Inputs
    targets: torch.Tensor | None
    size: int
    weight: float


@dataclass(frozen=True)
class _Scan:
    """What one pass over the data found: per batch its samples, terms and fingerprint."""

    sizes: tuple[int, ...]
    counts: tuple[int, ...]
    marks: tuple[tuple, ...]


def extract_output(raw: Any) -> torch.Tensor | None:
    """The tensor a measure differentiates, from what a model returned (module docstring)."""
    if isinstance(raw, torch.Tensor):
        return raw
    if isinstance(raw, Mapping):
        value = raw.get("logits")
        return value if isinstance(value, torch.Tensor) else None
    if isinstance(raw, tuple | list):
        return raw[0] if raw and isinstance(raw[0], torch.Tensor) else None
    value = getattr(raw, "logits", None)
    return value if isinstance(value, torch.Tensor) else None


def _inputs_phrase(inputs: Inputs) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"inputs of shape {tuple(inputs.shape[1:])}"
    return f"the inputs ({batch_io.describe(inputs)})"


def _describe_output(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return f"a {type(raw).__name__} with keys {list(raw)[:8]}"
    if isinstance(raw, tuple | list):
        kinds = [type(v).__name__ for v in raw[:4]]
        return f"a {type(raw).__name__} of {len(raw)} items ({', '.join(kinds)} ...)"
    return f"a {type(raw).__name__}"


class Subject:
    """What a measurement is taken of.

    Args:
        model: any ``nn.Module``; it is never modified (mode, buffers, parameters, grads).
        data: a :class:`~normscope.data.Dataset`, ``(inputs, targets)`` (inputs a tensor, a
            tuple or a mapping of tensors; targets None for unlabelled data), a DataLoader,
            or any re-iterable of batches ``(inputs, targets)`` or mappings with ``labels``.
        loss: ``"cross_entropy"``, ``"mse"``, or a callable ``loss_fn(output, target)``
            returning the batch's mean loss.
        bn_mode: ``"train"`` (batch statistics) or ``"eval"`` (running statistics).
        batch_size: evaluate in-memory data in mini-batches of this size (``None``: one
            batch; a DataLoader brings its own batches).
        params: which parameters are differentiated: ``None`` (all trainable), a glob
            pattern (``"*.weight"``), or a list of names or patterns.
        ignore_index: cross-entropy labels with this value are not counted.
        output_fn: turns the model's raw output into the tensor to measure, for outputs
            normscope cannot read by itself.
        max_batches: read only the first batches of the data.
        class_dim: where cross-entropy finds the classes: ``-1`` (last; language models),
            ``1`` (PyTorch's convention: ``(n, C, d1, ...)``, segmentation), or ``None``
            to read it from the labels' shape (an error when both fit).
        process_group: a ``torch.distributed`` process group (e.g.
            ``torch.distributed.group.WORLD``) to measure across: ``data`` is then this
            rank's shard of the batches (:func:`normscope.distributed.shard`), every rank
            passes the same model, and data-set sums run over every rank's batches
            (:mod:`normscope.distributed`). ``None`` (the default, also inside a
            distributed program): this process alone.

    Raises:
        ModelError: not a module, no trainable parameters, non-finite or mixed-dtype
            parameters, a frozen parameter selected.
        DataError: unreadable, empty or non-finite data, labels out of range.
        ShapeError: model and data or loss do not fit together.
        ConfigError: bad options, or a one-sample batch where batch statistics are used;
            under a process group, in-memory data without ``batch_size`` where batch
            statistics are used (full-batch statistics are not synchronized across ranks).
        DistributedError: ranks that hold different models or options, or a rank that failed.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
        ...                             torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> s = Subject(model, (x, y), loss="cross_entropy", bn_mode="train")
        >>> s.num_params, s.samples_coupled
        (83, True)
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss: str | Callable | Loss = "cross_entropy",
        bn_mode: BnMode = "train",
        batch_size: int | None = None,
        params: str | Sequence[str] | None = None,
        *,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        output_fn: Callable[[Any], torch.Tensor] | None = None,
        max_batches: int | None = None,
        class_dim: int | None = None,
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if bn_mode not in BN_MODES:
            raise unknown_name("bn_mode", bn_mode, BN_MODES)
        if output_fn is not None and not callable(output_fn):
            raise ConfigError(f"output_fn must be callable, got {type(output_fn).__name__}.")
        self.model = model
        self.loss_fn = resolve_loss(loss, ignore_index=ignore_index, class_dim=class_dim)
        self.loss_name = self.loss_fn.name
        self.bn_mode: BnMode = bn_mode
        self.output_fn = output_fn
        self.layout = self._select_params(params)
        self.params_selection = params
        self._aliases = _parameter_aliases(model, self.layout.names)
        self.dtype = self._model_dtype()
        self.work_dtype = torch.float32 if self.dtype in HALF_DTYPES else self.dtype
        self.device = self._model_device()
        # where each selected parameter lives (a model spread over devices has several)
        self.param_devices = tuple(model.get_parameter(n).device for n in self.layout.names)
        self.data = data if isinstance(data, Dataset) else None
        self.source = batch_io.batch_source(data, batch_size=batch_size, max_batches=max_batches)
        self.batch_size = batch_size
        self._mode_depth = 0
        self._scale_invariant: list[ParamGroup] | None = None
        self.group = Group.of(process_group)
        with self._together(), preserved_buffers(model):
            self._check_finite_parameters()
            first = self._first_raw_batch()
            self.labelled = first.targets is not None
            # structural coupling first: a one-sample batch's failure is explained by it
            self.samples_coupled = self._structural_coupling()
            self.output_shape, self.num_outputs = self._check_output(first, grad=True)
            self._scan = self._scan_data(first)
            self.samples_coupled = self.samples_coupled or self._forward_coupling(first)
        if self.group is not None:
            self.group.agree(self._replica_description(), None)
            self.samples_coupled = not self.group.all(not self.samples_coupled)
        with self._together(), preserved_buffers(model):
            self._check_single_sample_batches()
            self._check_sharded_statistics(data)
        self._totals = self._count_totals()
        self.num_terms = self._totals[1]
        if self.labelled and self.num_terms == 0:  # over every rank: a shard may count none
            raise DataError(
                "no target is counted: every label equals ignore_index="
                f"{getattr(self.loss_fn, 'ignore_index', None)}."
            )

    # ------------------------------------------------------------------ across processes
    @contextlib.contextmanager
    def _together(self) -> Iterator[None]:
        """Checks that may fail on one rank only: the failure is raised on every rank."""
        if self.group is None:
            yield
            return
        try:
            yield
        except Exception as err:
            self.group.agree(None, err)
        self.group.agree(None, None)

    def _replica_description(self) -> dict[str, object]:
        """What every rank must share: the model, its values, the options and data kind."""
        return {
            "parameters": tuple(
                (n, tuple(shape))
                for n, shape in zip(self.layout.names, self.layout.shapes, strict=True)
            ),
            "dtype": str(self.dtype),
            "bn_mode": self.bn_mode,
            "loss": self.loss_name,
            "labelled": self.labelled,
            "output shape": self.output_shape,
            "batch_size": self.batch_size,
            "streamed data": self.source.streamed,
            "parameter values": fingerprint([p for _, p in self.model.named_parameters()]),
            "buffer values": fingerprint([b for _, b in self.model.named_buffers()]),
        }

    def _check_sharded_statistics(self, data: Any) -> None:
        """Refuse full-batch statistics split across ranks (they are not synchronized)."""
        if self.group is None or not self.samples_coupled:
            return
        if batch_io.in_memory(data) and self.batch_size is None:
            raise ConfigError(
                "the model normalizes with batch statistics (samples are coupled) and the "
                f"in-memory data has no batch_size, so each of the {self.group.size} ranks "
                "would normalize its shard with the shard's own statistics instead of the "
                "whole data set's: full-batch statistics are not synchronized across "
                "processes. Set batch_size (each batch normalizes with its own statistics, "
                "exactly as in one process), use bn_mode='eval', or measure in one process."
            )

    def _count_totals(self) -> tuple[int, int, int]:
        """Samples, counted loss terms and batches over every rank's shard."""
        local = (sum(self._scan.sizes), sum(self._scan.counts), len(self._scan.sizes))
        if self.group is None:
            return local
        return tuple(int(v) for v in self.group.sum_numbers(local, dtype=torch.int64))

    def sum_over_shards(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the ranks' shards under a process group; ``t`` itself otherwise.

        A data-set sum is the sum of every rank's part: operators call this on their
        batches' weighted sum, so that every rank holds the same result.
        """
        return t if self.group is None else self.group.sum(t)

    # ------------------------------------------------------------------ validation
    def _select_params(self, params: str | Sequence[str] | None) -> ParamLayout:
        named = dict(self.model.named_parameters())
        trainable = {n: p for n, p in named.items() if p.requires_grad}
        if not trainable:
            raise ModelError(
                "the model has no trainable parameters: set requires_grad=True on the "
                "parameters to measure."
            )
        if params is None:
            chosen = list(trainable)
        else:
            patterns = [params] if isinstance(params, str) else list(params)
            if not patterns:
                raise ConfigError(
                    "params is empty: give parameter names or glob patterns, or None for "
                    "every trainable parameter."
                )
            chosen = [n for n in trainable if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
            for p in patterns:
                if any(fnmatch.fnmatchcase(n, p) for n in trainable):
                    continue
                frozen = [n for n in named if fnmatch.fnmatchcase(n, p)]
                if frozen:
                    raise ModelError(
                        f"parameter {p!r} matches only frozen parameters ({', '.join(frozen[:4])}"
                        "; requires_grad=False): unfreeze them with requires_grad_(True) to "
                        "measure them, or select trainable ones."
                    )
                raise unknown_name("parameter (or pattern)", p, trainable)
        return ParamLayout(tuple(chosen), tuple(trainable[n].shape for n in chosen))

    def _model_dtype(self) -> torch.dtype:
        dtypes = {
            self.model.get_parameter(n).dtype
            for n in self.layout.names
            if self.model.get_parameter(n).is_floating_point()
        }
        if len(dtypes) != 1:
            raise ModelError(
                f"the model mixes parameter dtypes {sorted(map(str, dtypes))}: cast it to one "
                "dtype, e.g. model.double()."
            )
        return dtypes.pop()

    def _model_device(self) -> torch.device:
        device = self.model.get_parameter(self.layout.names[0]).device
        if device.type == "meta":
            raise ModelError(
                "the model's parameters are on the meta device and hold no values: "
                "materialize them first (model.to_empty(device='cpu') and load a state dict)."
            )
        return device

    def _check_finite_parameters(self) -> None:
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise ModelError(
                f"non-finite (NaN or inf) values in parameters {bad[:5]}: re-initialize or "
                "load finite weights before measuring."
            )

    def _first_raw_batch(self) -> batch_io.RawBatch:
        for raw in self.source:
            return raw
        raise DataError("the data holds no batch: give at least one sample.")

    def _check_output(
        self, raw: batch_io.RawBatch, *, grad: bool = False, index: int = 0
    ) -> tuple[tuple[int, ...], int]:
        """Run one batch: the output must be usable, depend on the parameters (``grad``:
        checked on the first batch) and fit the targets. Returns the per-sample output
        shape and the number of outputs (classes) per loss term."""
        inputs = batch_io.move(raw.inputs, self.device, self.dtype)
        theta = self.theta.requires_grad_(grad)
        try:
            with torch.set_grad_enabled(grad):
                raw_out = self._raw_output(theta, inputs)
        except NormscopeError:
            raise
        except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
            raise self._forward_error(raw, index, err) from err
        out = self._extract(raw_out)
        where = "" if index == 0 else f" (batch {index})"
        if out.ndim == 0:
            raise ShapeError(
                f"the model's output{where} is a scalar, shape (): a loss computed from labels "
                "passed among the inputs? Give the labels as targets, not inputs, or pick the "
                "logits with output_fn."
            )
        if out.shape[0] != raw.size:
            raise ShapeError(
                f"the model returned shape {tuple(out.shape)}{where} for a batch of {raw.size} "
                "samples; outputs need the samples in dimension 0 (use output_fn to reshape)."
            )
        if not out.is_floating_point():
            raise ShapeError(
                f"the model's output has dtype {out.dtype}; measures differentiate a "
                "floating-point output (use output_fn to pick it)."
            )
        if grad and not out.requires_grad:
            raise ConfigError(
                "the model's output does not depend on the measured parameters: the model "
                "(or output_fn) detached it (.detach(), torch.no_grad(), .item(), NumPy), so "
                "every derivative would be 0. Return the output of torch operations on the "
                "parameters."
            )
        out = out.detach()
        y = None if raw.targets is None else self._targets_on_device(raw.targets)
        classes = self._check_num_classes(out, y)
        if y is not None:
            self.loss_fn.check(out, y)
        return tuple(out.shape[1:]), classes

    def _forward_error(self, raw: batch_io.RawBatch, index: int, err: Exception) -> Exception:
        """The NormscopeError that explains why a batch's forward pass failed."""
        text = str(err)
        if raw.size == 1 and self.samples_coupled and "value per channel" in text:
            return self._one_sample_error(index, err)
        ints = [n for n, t in batch_io.tensors(raw.inputs) if not t.is_floating_point()]
        where = f"batch {index} of " if index else ""
        if ints and any(w in text for w in ("dtype", "scalar type", "Long", "Int")):
            return ShapeError(
                f"the model cannot take integer inputs ({', '.join(ints)}) from {where}data "
                f"{self.source.describe()!r}: {type(err).__name__}: {err}. Integer inputs "
                "(token ids, masks) are never cast: give floating inputs (x.float()) if the "
                "model takes numbers."
            )
        return ShapeError(
            f"the model cannot take {_inputs_phrase(raw.inputs)} from {where}data "
            f"{self.source.describe()!r}: {type(err).__name__}: {err}. "
            f"{self._input_hint(raw.inputs)}"
        )

    def _one_sample_error(self, index: int, err: Exception) -> ConfigError:
        return ConfigError(
            f"batch {index} of {self.source.describe()} holds one sample, but the model "
            f"normalizes with batch statistics ({err}). Fix: more samples per batch (a "
            "batch_size that leaves no batch of one sample, drop_last=True in the "
            "DataLoader), or bn_mode='eval'."
        )

    def _check_num_classes(self, out: torch.Tensor, y: torch.Tensor | None) -> int:
        """Outputs per loss term (classes); an explicit ``num_classes`` must match them."""
        classes = self.loss_fn.num_outputs(out, y)
        data = self.data
        if data is None or data.task != "classification" or data.num_classes is None:
            return classes
        if out.ndim >= 2 and classes != data.num_classes:
            k = data.num_classes
            raise ShapeError(
                f"the model outputs shape {tuple(out.shape)} but data set {data.name!r} has "
                f"{k} classes, so loss {self.loss_name!r} needs (N, {k}): make the output "
                f"layer produce {k} values."
            )
        return classes

    def _input_hint(self, inputs: Inputs) -> str:
        floats = [t for _, t in batch_io.tensors(inputs) if t.is_floating_point()]
        convolutional = any(isinstance(m, nn.modules.conv._ConvNd) for m in self.model.modules())
        if convolutional and floats and floats[0].ndim == 2:
            return (
                "The inputs are flat vectors: a convolutional model needs images, e.g. "
                "data.load('digits', flatten=False) from Python or --input-shape 1,8,8 in "
                "the audit; otherwise change the model's input layer."
            )
        return "Reshape the data or change the model's input layer."

    def _targets_on_device(self, targets: torch.Tensor) -> torch.Tensor:
        # integer labels of any width become int64, the only index type every loss takes
        integer = not targets.is_floating_point() and targets.dtype != torch.bool
        dtype = (
            self.dtype if targets.is_floating_point() else torch.long if integer else targets.dtype
        )
        return targets.to(device=self.device, dtype=dtype)

    def _scan_data(self, first: batch_io.RawBatch) -> _Scan:
        """One pass over the data: sizes, counted terms, labels and values checked; a
        batch whose input or target layout (names, dtypes, shapes past the samples) is
        new runs forward once, so a batch the model cannot take is found here."""
        sizes, counts, marks = [], [], []
        seen = {_signature(first)}
        for index, raw in enumerate(self.source):
            if _signature(raw) not in seen:
                seen.add(_signature(raw))
                with torch.no_grad():
                    self._check_output(raw, index=index)
            if (raw.targets is not None) != self.labelled:
                raise DataError(
                    f"batch {index} {'has' if raw.targets is not None else 'lacks'} targets "
                    "unlike the first batch: give targets for every batch or for none."
                )
            self._check_values(index, raw)
            sizes.append(raw.size)
            counts.append(self._count(raw))
            marks.append(self.source.check_pass(index, raw, None))
        return _Scan(tuple(sizes), tuple(counts), tuple(marks))

    def _count(self, raw: batch_io.RawBatch) -> int:
        if raw.targets is None:
            return raw.size
        self.loss_fn.check_targets(raw.targets, self.num_outputs)
        return self.loss_fn.count(raw.targets)

    def _check_values(self, index: int, raw: batch_io.RawBatch) -> None:
        for name, t in batch_io.tensors(raw.inputs):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise DataError(
                    f"data {self.source.describe()!r} has NaN or inf inputs (input {name!r} of "
                    f"batch {index}): clean or drop them."
                )
        y = raw.targets
        if y is not None and y.is_floating_point() and not torch.isfinite(y).all():
            raise DataError(
                f"data {self.source.describe()!r} has NaN or inf targets (batch {index}): "
                "clean or drop them."
            )

    def _structural_coupling(self) -> bool:
        return any(uses_batch_statistics(m, self.bn_mode) for m in self.model.modules())

    def _forward_coupling(self, raw: batch_io.RawBatch) -> bool:
        """Whether changing one sample's inputs moves another sample's output."""
        if raw.size < 2:
            return False
        n = min(raw.size, 8)
        inputs = batch_io.move(batch_io.slice_inputs(raw.inputs, 0, n), self.device, self.dtype)
        changed = _change_first_sample(inputs)
        if changed is None:
            return False
        with torch.no_grad():
            theta = self.params
            before, after = self.output(theta, inputs)[1:], self.output(theta, changed)[1:]
        tol = 1e-3 if self.dtype in HALF_DTYPES else 1e-5
        scale = float(before.abs().max()) if before.numel() else 0.0
        return bool((after - before).abs().max() > tol * max(scale, 1e-30))

    def _check_single_sample_batches(self) -> None:
        if not self.samples_coupled:
            return
        for index, raw in enumerate(self.source):
            if raw.size != 1:
                continue
            inputs = batch_io.move(raw.inputs, self.device, self.dtype)
            try:
                with torch.no_grad():
                    self.output(self.params, inputs)
            except (RuntimeError, ValueError) as err:
                raise self._one_sample_error(index, err) from err

    # ------------------------------------------------------------------ sizes
    @property
    def num_params(self) -> int:
        return self.layout.size

    @property
    def num_samples(self) -> int:
        """Samples of the data (of every rank's shard under a process group)."""
        return self._totals[0]

    @property
    def num_batches(self) -> int:
        """Batches of the data (of every rank's shard under a process group)."""
        return self._totals[2]

    @property
    def has_batch_norm(self) -> bool:
        """Whether any module normalizes with batch statistics in training mode."""
        return any(is_batch_norm(m) for m in self.model.modules())

    def describe(self) -> dict[str, object]:
        """The settings every Measurement records about its Subject."""
        out: dict[str, object] = {
            "bn_mode": self.bn_mode,
            "loss": self.loss_name,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "num_batches": self.num_batches,
            "num_params": self.num_params,
            "params": self.params_selection,
            "dtype": str(self.dtype).removeprefix("torch."),
            "data": self.data.name if self.data is not None else self.source.describe(),
            "samples_coupled": self.samples_coupled,
        }
        if isinstance(self.loss_fn, CrossEntropy):
            out["ignore_index"] = self.loss_fn.ignore_index
            if self.loss_fn.class_dim is not None:
                out["class_dim"] = self.loss_fn.class_dim
        if self.num_terms != self.num_samples:
            out["num_terms"] = self.num_terms
        if self.output_fn is not None:
            out["output_fn"] = getattr(self.output_fn, "__qualname__", repr(self.output_fn))
        if self.group is not None:
            out |= self.group.describe()
        return out

    # ------------------------------------------------------------------ functional view
    @property
    def theta(self) -> torch.Tensor:
        """The selected parameters as one flat, detached vector (a copy) on :attr:`device`."""
        return torch.cat([p.reshape(-1).to(self.device) for p in self.params]).clone()

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """The selected parameters, detached, each where it lives (no copy).

        :meth:`output` takes them as they are: the per-parameter form of ``theta`` for a
        model whose parameters sit on several devices.
        """
        return tuple(self.model.get_parameter(n).detach() for n in self.layout.names)

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
        fastpath = torch.backends.mha.get_fastpath_enabled()
        try:
            # fused transformer kernels (the "fast path") have no forward-mode or
            # second derivatives: every measurement runs the composite ops
            torch.backends.mha.set_fastpath_enabled(False)
            with sdpa_kernel([SDPBackend.MATH]):
                for m in self.model.modules():
                    m.training = False
                    if self.bn_mode == "train" and is_batch_norm(m):
                        m.training = True
                        m.track_running_stats = False
                self._mode_depth = 1
                yield
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
            self._mode_depth = 0
            for m, training, track in saved:
                m.training = training
                if track is not None:
                    m.track_running_stats = track

    def output(self, theta: torch.Tensor | Sequence[torch.Tensor], inputs: Inputs) -> torch.Tensor:
        """``f(theta; inputs)`` for one batch (batch statistics span all of it).

        ``theta`` is the flat vector, or one tensor per selected parameter (shaped like it,
        in layout order). Each parameter's part is used on that parameter's device, so a
        model spread over several devices runs where its layers are.
        """
        return self._extract(self._raw_output(theta, inputs))

    def _raw_output(self, theta: torch.Tensor | Sequence[torch.Tensor], inputs: Inputs) -> Any:
        args, kwargs = batch_io.call_arguments(inputs)
        params = self._named(theta)
        # every name a selected parameter has (a tied weight, a module registered twice)
        # gets the same tensor; torch.func's own weight tying turns an aliased module's
        # parameters into plain tensors for good, so it is off
        params |= {alias: params[name] for alias, name in self._aliases.items()}
        with self.modes():
            return functional_call(self.model, params, args, kwargs, tie_weights=False)

    def _named(self, theta: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(theta, torch.Tensor):
            named = self.layout.unflatten(theta)
        else:
            named = dict(zip(self.layout.names, theta, strict=True))
        if len(set(self.param_devices)) == 1 and next(iter(named.values())).device == self.device:
            return named
        return {n: t.to(d) for (n, t), d in zip(named.items(), self.param_devices, strict=True)}

    def _extract(self, raw: Any) -> torch.Tensor:
        if self.output_fn is None:
            out = extract_output(raw)
        else:
            try:
                out = self.output_fn(raw)
            except Exception as err:  # a user's function failing is a user error
                raise ConfigError(
                    f"output_fn raised {type(err).__name__}: {err} (the model returned "
                    f"{_describe_output(raw)})."
                ) from err
        if not isinstance(out, torch.Tensor):
            how = "output_fn returned" if self.output_fn is not None else "the model returned"
            raise ShapeError(
                f"{how} {_describe_output(raw if self.output_fn is None else out)}, which holds "
                "no output tensor normscope can measure: return a tensor, a tuple whose first "
                "item is the output, a mapping or object with 'logits', or pass "
                "output_fn=lambda out: ... to pick it."
            )
        return out

    def forward(self, inputs: Inputs) -> torch.Tensor:
        """The model called as it is (its own parameters and modes), output extracted.

        For training loops; measurements use the functional :meth:`output`.
        """
        args, kwargs = batch_io.call_arguments(inputs)
        return self._extract(self.model(*args, **kwargs))

    def batches(self) -> Iterator[Batch]:
        """The evaluation batches in their fixed order, moved to the model's device."""
        for index, raw in enumerate(self.source):
            if index >= len(self._scan.sizes):
                break
            self.source.check_pass(index, raw, self._scan.marks[index])
            targets = None if raw.targets is None else self._targets_on_device(raw.targets)
            yield Batch(
                batch_io.move(raw.inputs, self.device, self.dtype),
                targets,
                raw.size,
                self._scan.counts[index] / max(self.num_terms, 1),
            )

    def loss_batches(self) -> Iterator[Batch]:
        """The batches that carry counted loss terms (DataError for unlabelled data)."""
        self.require_targets("the loss")
        return (b for b in self.batches() if b.weight > 0)

    def first_batch(self) -> Batch:
        return next(self.batches())

    def require_targets(self, what: str) -> None:
        if not self.labelled:
            raise DataError(
                f"{what} needs targets, but the data has none: give (inputs, targets) or "
                "batches with labels, or use a measure that needs no labels (input_lipschitz, "
                "isometry_gap)."
            )

    def loss_of(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss ``L_b`` of one batch's outputs against its targets."""
        return self.loss_fn.value(out, targets)

    def loss(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """``L(theta)``: the weighted mean of the per-batch mean losses.

        Under a process group the sum runs over every rank's batches: the value is
        summed over the ranks, and reverse-mode autograd through it (first order) gives
        the full gradient on every rank, the parameter gradient being summed over the
        ranks in the backward pass as in DDP. Second derivatives through it are refused
        (the curvature operators sum their own products).
        """
        theta = self.theta if theta is None else theta
        if self.group is not None:
            theta = replicated(theta, self.group)
        total = None
        with self.modes():
            for b in self.loss_batches():
                term = b.weight * self.loss_of(self.output(theta, b.inputs), b.targets)
                term = term.to(self.work_dtype)
                total = term if total is None else total + term
        if self.group is None:
            return total
        if total is None:  # no counted term here: a zero that still reaches theta's gradient
            total = (theta.sum() * 0).to(self.work_dtype)
        return sum_over_ranks(total, self.group)

    def batch_norm_in_epsilon_regime(self, ratio: float = 10.0) -> list[str]:
        """Batch-norm layers that do not normalize on this data: the epsilon regime.

        A batch-norm layer divides by ``sqrt(var + eps)``; where a channel's batch variance
        (batch mean square for layers without mean subtraction) on the first batch is
        below ``ratio * eps``, the layer's gain is set by ``eps``, about
        ``1/sqrt(eps)``, not by the data. Returns the names of such layers (empty where
        no layer uses batch statistics).
        """
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
            if uses_batch_statistics(m, self.bn_mode) and isinstance(getattr(m, "eps", None), float)
        ]
        if not hooks:
            return found
        try:
            with torch.no_grad():
                self.output(self.params, self.first_batch().inputs)
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
        1e-5 in float32, 1e-9 in float64, 1e-2 in half precision). The normalization
        layers' epsilon is set to 1e-30 during the test (PyTorch refuses 0), because
        epsilon is what makes invariance approximate; groups that are all zeros are
        skipped, since scaling them changes nothing trivially. Typical finds: weights
        and biases that feed a batch norm in train mode or a layer norm; ``weight_v`` of
        weight normalization.
        """
        if rtol is None and self._scale_invariant is not None:
            return self._scale_invariant
        defaults = {torch.float64: 1e-9, torch.float32: 1e-5}
        tol = rtol if rtol is not None else defaults.get(self.dtype, 1e-2)
        inputs = self.first_batch().inputs
        theta = self.theta
        with torch.no_grad(), self.modes(), _tiny_norm_epsilon(self.model):
            base = self.output(theta, inputs)

            def invariant(names: Sequence[str]) -> bool:
                mask = self.layout.mask(names, theta)
                if not (theta * mask).any():
                    return False
                for c in (2.0, 0.5):
                    change = (self.output(theta * (1 + (c - 1) * mask), inputs) - base).norm()
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


def _parameter_aliases(model: nn.Module, names: Sequence[str]) -> dict[str, str]:
    """Other names of the selected parameters: ``{alias: selected name}``.

    A parameter shared by two modules (tied embeddings) or reached through a module
    registered under two names appears once in ``named_parameters()``; its other names
    must receive the same tensor in a functional call.
    """
    chosen = {id(p): n for n, p in model.named_parameters() if n in set(names)}

    def slot(name: str) -> tuple[int, str]:
        owner, _, attr = name.rpartition(".")
        return id(model.get_submodule(owner)), attr

    # an alias that names the same slot (one module under two paths) is set with it
    return {
        n: chosen[id(p)]
        for n, p in model.named_parameters(remove_duplicate=False)
        if id(p) in chosen and slot(n) != slot(chosen[id(p)])
    }


def _signature(raw: batch_io.RawBatch) -> tuple:
    """What must agree between batches: input names, dtypes and shapes past the samples."""
    parts = [(n, t.dtype, tuple(t.shape[1:])) for n, t in batch_io.tensors(raw.inputs)]
    y = raw.targets
    return (*parts, None if y is None else (y.dtype, tuple(y.shape[1:])))


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``model`` on exit: a module may write its buffers in its
    forward pass (a step counter, a cache), and a measurement must leave them as found."""
    saved = [(b, b.detach().clone()) for b in model.buffers() if b is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                if not torch.equal(b, value):
                    b.copy_(value)


def _change_first_sample(inputs: Inputs) -> Inputs | None:
    """``inputs`` with sample 0 replaced (by sample 1's values, or shifted floats).

    None when no input can be changed (sample 0 equals sample 1 and nothing is floating).
    """
    changed, any_change = {}, False
    for name, t in batch_io.tensors(inputs):
        new = t.clone()
        if not torch.equal(t[0], t[1]):
            new[0] = t[1]
            any_change = True
        elif t.is_floating_point():
            new[0] = t[0] + 1.0
            any_change = True
        changed[name] = new
    if not any_change:
        return None
    if isinstance(inputs, torch.Tensor):
        return changed["0"]
    if isinstance(inputs, Mapping):
        return {k: changed.get(str(k), v) for k, v in inputs.items()}
    return tuple(changed.get(str(i), v) for i, v in enumerate(inputs))


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
