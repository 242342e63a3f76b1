"""Batches as PyTorch users hold them, read in one fixed order.

A model's *inputs* for one batch are a tensor (one positional argument), a tuple of
tensors (positional arguments) or a mapping (keyword arguments: ``input_ids``,
``attention_mask``, ``pixel_values`` ...; values that are not tensors, such as
``use_cache=False``, are passed unchanged). Every tensor's first dimension is the sample
dimension, so a batch is sliced by slicing every tensor along it.

:func:`batch_source` turns what a user has into a :class:`BatchSource`, a re-iterable of
:class:`RawBatch` in a fixed order:

- a :class:`~normscope.data.Dataset`, or ``(inputs, targets)`` with ``inputs`` as above
  and ``targets`` a tensor (or ``None`` for unlabelled data): one batch, or consecutive
  mini-batches of ``batch_size`` samples;
- a ``torch.utils.data.DataLoader`` or any re-iterable of batches (a list of
  ``(inputs, targets)``, or of mappings holding the targets under ``labels`` or ``label``,
  Hugging Face style): read one batch at a time, never concatenated.

A tuple of two is a pair ``(inputs, targets)``; a list of two tensors is ambiguous (a
pair, or two unlabelled batches) and refused: give a tuple, or batches as ``(x,)``.

Every pass must see the same batches in the same order (a measurement takes many passes);
a shuffling DataLoader is refused, and :meth:`BatchSource.check_pass` compares each pass
with the first, batch by batch, so data that changes between passes (random
augmentation, a sampler with its own generator) is an error, not a silently different
matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from normscope.data.dataset import Dataset
from normscope.errors import ConfigError, DataError

Inputs = Tensor | tuple | Mapping
"""One batch of model inputs: a tensor, a tuple of tensors, or a mapping of keyword arguments."""

LABEL_KEYS = ("labels", "label")
"""Keys under which a mapping batch holds its targets (Hugging Face models and datasets)."""


# ----------------------------------------------------------------------------- inputs
def tensors(inputs: Inputs) -> list[tuple[str, Tensor]]:
    """The tensors of ``inputs`` with their names (``"0"``, ``"1"`` ... for positional)."""
    if isinstance(inputs, Tensor):
        return [("0", inputs)]
    if isinstance(inputs, Mapping):
        return [(str(k), v) for k, v in inputs.items() if isinstance(v, Tensor)]
    return [(str(i), v) for i, v in enumerate(inputs) if isinstance(v, Tensor)]


def _map(inputs: Inputs, fn) -> Inputs:
    """``inputs`` with ``fn`` applied to every tensor (other values kept)."""
    if isinstance(inputs, Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {k: fn(v) if isinstance(v, Tensor) else v for k, v in inputs.items()}
    return tuple(fn(v) if isinstance(v, Tensor) else v for v in inputs)


def num_samples(inputs: Inputs) -> int:
    """The common first dimension of every input tensor; DataError if they disagree."""
    found = tensors(inputs)
    if not found:
        raise DataError(
            f"the inputs hold no tensor ({_kind(inputs)}): give a tensor, a tuple of tensors "
            "or a mapping of tensors."
        )
    sizes = {name: (t.shape[0] if t.ndim else None) for name, t in found}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise DataError(
            f"every input tensor needs the samples in dimension 0 with the same count; got "
            f"{describe(inputs)}."
        )
    return next(iter(sizes.values()))


def slice_inputs(inputs: Inputs, start: int, stop: int) -> Inputs:
    """Samples ``start:stop`` of every input tensor (views, no copy)."""
    return _map(inputs, lambda t: t[start:stop])


def _own_memory(t: Tensor) -> Tensor:
    """``t``, copied when it is a view into the middle of a larger tensor.

    Vectorized kernels round differently at different memory alignments, so a batch
    sliced from a tensor and the same batch collated by a DataLoader (fresh memory) would
    give results that differ in the last bits; copying makes them agree bit for bit.
    """
    return t.clone() if t.storage_offset() else t


def select_inputs(inputs: Inputs, index: Tensor) -> Inputs:
    """The samples ``index`` (an integer tensor) of every input tensor."""
    return _map(inputs, lambda t: t[index])


def move(inputs: Inputs, device: torch.device, float_dtype: torch.dtype) -> Inputs:
    """Tensors moved to ``device``; floating ones cast to ``float_dtype``.

    Integer and boolean tensors (token ids, masks, labels) are never cast.
    """
    return _map(
        inputs,
        lambda t: t.to(device=device, dtype=float_dtype if t.is_floating_point() else t.dtype),
    )


def call_arguments(inputs: Inputs) -> tuple[tuple, dict[str, Any]]:
    """``(args, kwargs)`` for ``model(*args, **kwargs)``."""
    if isinstance(inputs, Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    return tuple(inputs), {}


def describe(inputs: Inputs) -> str:
    """A short description: names, shapes and dtypes of the input tensors."""
    parts = [
        f"{name} {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
        for name, t in tensors(inputs)
    ]
    return ", ".join(parts) if parts else _kind(inputs)


def _kind(obj: object) -> str:
    return type(obj).__name__


def _fingerprint(inputs: Inputs, targets: Tensor | None) -> tuple:
    """Cheap summary of a batch (shapes and float64 sums) to detect changed passes."""

    def summary(t: Tensor) -> tuple:
        total = float(t.detach().to(torch.float64).sum()) if t.numel() else 0.0
        return (tuple(t.shape), total)

    parts = [summary(t) for _, t in tensors(inputs)]
    return (*parts, None if targets is None else summary(targets))


def _as_tensor(value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{what} must be a tensor (or array), got {_kind(value)}: {err}") from err


def _as_inputs(value: Any) -> Inputs:
    if isinstance(value, Tensor | Mapping):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], Tensor):
        return tuple(value)
    return _as_tensor(value, "inputs")


# ----------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class RawBatch:
    """One batch as read from the source: inputs, targets (or None) and its sample count."""

    inputs: Inputs
    targets: Tensor | None
    size: int


class BatchSource:
    """A fixed sequence of batches that can be read any number of times."""

    streamed: bool = False
    """True when batches are read from a loader each pass rather than sliced from memory."""

    def __iter__(self) -> Iterator[RawBatch]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check_pass(self, index: int, batch: RawBatch, first: tuple | None) -> tuple:
        """The batch's fingerprint; DataError when it differs from the first pass's ``first``."""
        mark = _fingerprint(batch.inputs, batch.targets) if self.streamed else (batch.size,)
        if first is not None and mark != first:
            raise DataError(
                f"batch {index} of {self.describe()} differs from the first pass over the data "
                "(other samples, order or values): a measurement reads the data many times "
                "and needs the same batches in the same order each time. Use "
                "DataLoader(shuffle=False), no random transforms, and a re-iterable source."
            )
        return mark


class TensorBatches(BatchSource):
    """Consecutive mini-batches of in-memory inputs and targets."""

    def __init__(
        self,
        inputs: Inputs,
        targets: Tensor | None,
        *,
        batch_size: int | None,
        max_batches: int | None,
        name: str,
    ) -> None:
        self.inputs = inputs
        self.targets = targets
        self.name = name
        self.num_samples = num_samples(inputs)
        if self.num_samples == 0:
            raise DataError(f"data {name!r} is empty: give at least one sample.")
        if targets is not None and (targets.ndim == 0 or len(targets) != self.num_samples):
            raise DataError(
                f"data {name!r} has {self.num_samples} inputs but targets of shape "
                f"{tuple(targets.shape)}: give one target (row) per input."
            )
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= self.num_samples
        ):
            raise ConfigError(
                f"batch_size must lie in [1, {self.num_samples}] (the number of samples), "
                f"got {batch_size!r}."
            )
        self.batch_size = batch_size
        size = batch_size or self.num_samples
        starts = range(0, self.num_samples, size)
        self.bounds = [(i, min(i + size, self.num_samples)) for i in starts][:max_batches]

    def __iter__(self) -> Iterator[RawBatch]:
        for start, stop in self.bounds:
            y = None if self.targets is None else self.targets[start:stop]
            inputs = _map(slice_inputs(self.inputs, start, stop), _own_memory)
            yield RawBatch(inputs, y, stop - start)

    def describe(self) -> str:
        n = len(self.bounds)
        return self.name if n == 1 else f"{self.name} in {n} batches of {self.batch_size}"


class IterableBatches(BatchSource):
    """Batches read one at a time from a DataLoader or any re-iterable."""

    streamed = True

    def __init__(self, batches: Iterable, *, max_batches: int | None) -> None:
        if iter(batches) is batches:
            raise DataError(
                f"data is a one-pass iterator ({_kind(batches)}), but a measurement reads the "
                "data many times: pass a list of batches or a DataLoader instead."
            )
        _refuse_shuffling(batches)
        self.batches = batches
        self.max_batches = max_batches

    def __iter__(self) -> Iterator[RawBatch]:
        for index, item in enumerate(itertools.islice(self.batches, self.max_batches)):
            inputs, targets = _split_batch(item, index)
            yield RawBatch(inputs, targets, num_samples(inputs))

    def describe(self) -> str:
        kind = _kind(self.batches)
        size = getattr(self.batches, "batch_size", None)
        text = f"{kind}(batch_size={size})" if size is not None else kind
        return text if self.max_batches is None else f"{text}, first {self.max_batches} batches"


def _refuse_shuffling(batches: Iterable) -> None:
    sampler = getattr(batches, "sampler", None)
    batch_sampler = getattr(batches, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    random = torch.utils.data.RandomSampler
    if isinstance(sampler, random) or isinstance(inner, random):
        raise DataError(
            "the DataLoader shuffles (a RandomSampler), so every pass over it sees other "
            "batches, while a measurement needs the same batches each pass: build it with "
            "shuffle=False (shuffle once beforehand if you want a random subset)."
        )


def _split_batch(item: Any, index: int) -> tuple[Inputs, Tensor | None]:
    """``(inputs, targets)`` of one batch from a loader: a pair, a mapping, or bare inputs."""
    if isinstance(item, Mapping):
        key = next((k for k in LABEL_KEYS if k in item), None)
        if key is not None:
            rest = {k: v for k, v in item.items() if k != key}
            return rest, _as_tensor(item[key], f"batch {index}'s {key!r}")
        return item, None
    if isinstance(item, tuple | list):
        if len(item) == 2:
            inputs, targets = item
            return _as_inputs(inputs), None if targets is None else _as_tensor(
                targets, f"batch {index}'s targets"
            )
        if len(item) == 1:
            return _as_inputs(item[0]), None
        raise DataError(
            f"batch {index} is a sequence of {len(item)} items; a batch must be "
            "(inputs, targets), (inputs,), a mapping (targets under 'labels') or a tensor."
        )
    if isinstance(item, Tensor):
        return item, None
    raise DataError(
        f"batch {index} is a {_kind(item)}; a batch must be (inputs, targets), a mapping "
        "(targets under 'labels') or a tensor."
    )


def _is_targets(value: Any) -> bool:
    """Targets of a pair: a tensor, an array, None, or a flat list of numbers (labels)."""
    if value is None or isinstance(value, Tensor) or hasattr(value, "__array__"):
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and isinstance(value[0], int | float | bool)
    )


def _is_pair(data: Any) -> bool:
    """Whether ``data`` reads as one ``(inputs, targets)`` pair rather than a list of batches.

    A pair is a tuple (or list) of two whose second item is targets (module docstring); the
    second item of a list of batches is itself a batch (a pair, a mapping). A *list* of
    two tensors is ambiguous (a pair, or two unlabelled batches) and refused.
    """
    if not isinstance(data, tuple | list) or len(data) != 2:
        return False
    if isinstance(data, list) and all(isinstance(t, Tensor) for t in data):
        raise DataError(
            "data is a list of two tensors, which reads either as (inputs, targets) or as two "
            "unlabelled batches: pass a tuple (inputs, targets), or the batches as "
            "[(x1,), (x2,)]."
        )
    return _is_targets(data[1])


def _refuse_loose_tuple(data: Any) -> None:
    """A tuple of three or more tensors is not a pair and not a list of batches."""
    if isinstance(data, tuple) and len(data) > 2 and all(isinstance(t, Tensor) for t in data):
        raise DataError(
            f"data is a tuple of {len(data)} tensors; give (inputs, targets), with several "
            "inputs as a tuple or mapping: ((x1, x2), targets)."
        )


def in_memory(data: Any) -> bool:
    """Whether ``data`` is held in memory (a Dataset or a pair), not a loader of batches."""
    return isinstance(data, Dataset) or _is_pair(data)


def batch_source(
    data: Any, *, batch_size: int | None = None, max_batches: int | None = None
) -> BatchSource:
    """What a user passes as data, as a :class:`BatchSource` (module docstring).

    Args:
        data: a Dataset, ``(inputs, targets)``, a DataLoader or a re-iterable of batches.
        batch_size: mini-batches of in-memory data (a loader brings its own).
        max_batches: read only the first batches.

    Raises:
        DataError: unreadable data, a one-pass iterator, a shuffling DataLoader.
        ConfigError: ``batch_size`` out of range, or given with a loader.

    Example:
        >>> import torch
        >>> src = batch_source((torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)), batch_size=2)
        >>> [b.size for b in src]
        [2, 2, 1]
    """
    if max_batches is not None and (isinstance(max_batches, bool) or max_batches < 1):
        raise ConfigError(f"max_batches must be a positive integer, got {max_batches!r}.")
    if isinstance(data, Dataset):
        return TensorBatches(
            data.x, data.y, batch_size=batch_size, max_batches=max_batches, name=data.name
        )
    if _is_pair(data):
        inputs, targets = data
        targets = None if targets is None else _as_tensor(targets, "targets")
        return TensorBatches(
            _as_inputs(inputs),
            targets,
            batch_size=batch_size,
            max_batches=max_batches,
            name="tensors",
        )
    _refuse_loose_tuple(data)
    if isinstance(data, Iterable) and not isinstance(data, Tensor | str | bytes | Mapping):
        if batch_size is not None:
            raise ConfigError(
                f"batch_size={batch_size} applies to in-memory data; {_kind(data)} brings its "
                "own batches: drop batch_size (or set the loader's batch size)."
            )
        return IterableBatches(data, max_batches=max_batches)
    raise DataError(
        f"data must be a normscope.data.Dataset, a tuple (inputs, targets), a DataLoader or a "
        f"list of batches, got {_kind(data)}."
    )
