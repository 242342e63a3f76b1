"""Each rank's shard of in-memory data: a contiguous block of whole batches.

A measurement across ``W`` processes sees the batches of every rank, rank after rank.
Splitting the ``B`` batches of in-memory data into ``W`` contiguous blocks (rank ``q``
takes batches ``floor(q B / W)`` to ``floor((q + 1) B / W) - 1``) keeps every batch as
it is in one process, so with ``batch_size`` set the measured matrix is exactly the
one-process matrix, batch norm in train mode included (each batch normalizes with its own
statistics), and per-sample outputs (sample gradient norms, Gram rows) come back in the
one-process order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from normscope.data import batches as batch_io
from normscope.data.dataset import Dataset
from normscope.distributed.group import Group
from normscope.errors import ConfigError


def shard_bounds(num_samples: int, batch_size: int | None, rank: int, size: int) -> slice:
    """The samples of rank ``rank`` of ``size``: whole batches, contiguous, balanced.

    Without ``batch_size`` the samples themselves are split into ``size`` blocks (each
    rank's block is then one batch).

    Example:
        >>> [shard_bounds(26, 6, q, 2) for q in range(2)]
        [slice(0, 12, None), slice(12, 26, None)]
    """
    unit = batch_size or 1
    num_units = -(-num_samples // unit)
    if num_units < size:
        what = f"{num_units} batches of {batch_size}" if batch_size else f"{num_samples} samples"
        raise ConfigError(
            f"cannot shard {what} over {size} processes: every process needs at least one "
            "batch; use fewer processes or a smaller batch_size."
        )
    first, stop = rank * num_units // size, (rank + 1) * num_units // size
    return slice(first * unit, min(stop * unit, num_samples))


def shard(data: Any, process_group: Any, *, batch_size: int | None = None) -> Any:
    """This rank's shard of in-memory ``data`` (module docstring), of the same kind.

    Args:
        data: a :class:`~normscope.data.Dataset` or ``(inputs, targets)``; every rank
            passes the same data.
        process_group: the ``torch.distributed`` group the measurement spans (e.g.
            ``torch.distributed.group.WORLD``); ``None`` or a group of one process gives
            ``data`` back unchanged.
        batch_size: the batch size the Subject will use (give the Subject the same), so
            that shards hold whole batches.

    Raises:
        ConfigError: a DataLoader or list of batches (give each rank its own batches,
            e.g. a ``DistributedSampler`` without shuffling), or more processes than batches.

    Example (each of two processes)::

        >>> group = torch.distributed.group.WORLD                      # doctest: +SKIP
        >>> mine = shard(data, group, batch_size=512)                 # doctest: +SKIP
        >>> s = Subject(model, mine, batch_size=512, process_group=group)  # doctest: +SKIP
    """
    group = Group.of(process_group)
    if group is None:
        return data
    if not batch_io.in_memory(data):
        raise ConfigError(
            f"shard() splits in-memory data (a Dataset or (inputs, targets)); for "
            f"{type(data).__name__} give each rank its own batches instead, e.g. a "
            "DataLoader over a DistributedSampler(shuffle=False)."
        )
    if isinstance(data, Dataset):
        part = shard_bounds(len(data), batch_size, group.rank, group.size)
        return replace(data, x=data.x[part], y=None if data.y is None else data.y[part])
    inputs, targets = data
    if not isinstance(inputs, Tensor | tuple | Mapping):
        inputs = torch.as_tensor(inputs)
    n = batch_io.num_samples(inputs)
    part = shard_bounds(n, batch_size, group.rank, group.size)
    sliced = batch_io.slice_inputs(inputs, part.start, part.stop)
    return sliced, None if targets is None else targets[part]
