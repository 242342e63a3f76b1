"""The data an audit measures on: whatever a Subject takes, subsampled for a budget.

In-memory data (a Dataset, or ``(inputs, targets)`` with inputs a tensor, a tuple or a
mapping of tensors) is subsampled by a seeded random choice of samples. A DataLoader or
list of batches is not reshuffled: a smaller plan reads its first batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from normscope.data import batches as batch_io
from normscope.data.dataset import Dataset


@dataclass(frozen=True)
class Sample:
    """Data for a Subject: ``data`` and ``max_batches`` (None: all of it)."""

    data: Any
    max_batches: int | None
    num_samples: int


class AuditData:
    """What the user passed, with its size, name and default loss."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.source = batch_io.batch_source(data)
        self.sizes = [b.size for b in self.source]
        first = next(iter(self.source))
        self.first_inputs = first.inputs
        self.targets_are_labels = first.targets is not None and not (
            first.targets.is_floating_point()
        )
        self.in_memory = batch_io.in_memory(data)

    def __len__(self) -> int:
        return sum(self.sizes)

    @property
    def name(self) -> str:
        return self.data.name if isinstance(self.data, Dataset) else self.source.describe()

    @property
    def default_loss(self) -> str:
        """Cross-entropy for integer labels, mse for real-valued targets."""
        return "cross_entropy" if self.targets_are_labels else "mse"

    def sample(self, n: int, seed: int) -> Sample:
        """About ``n`` samples: a seeded random subset in memory, the first batches otherwise."""
        total = len(self)
        if n >= total:
            return Sample(self.data, None, total)
        if isinstance(self.data, Dataset):
            return Sample(self.data.batch(n, seed=seed), None, n)
        if self.in_memory:
            inputs, targets = self.data
            gen = torch.Generator().manual_seed(seed)
            index = torch.randperm(total, generator=gen)[:n]
            picked = None if targets is None else torch.as_tensor(targets)[index]
            return Sample((batch_io.select_inputs(inputs, index), picked), None, n)
        count, taken = 0, 0
        for size in self.sizes:
            count, taken = count + 1, taken + size
            if taken >= n:
                break
        return Sample(self.data, count, taken)

    def example(self, k: int, dtype: torch.dtype, device: torch.device) -> batch_io.Inputs:
        """The first ``k`` samples' inputs (floating ones in ``dtype``), for surgery."""
        inputs = batch_io.slice_inputs(self.first_inputs, 0, k)
        return batch_io.move(inputs, device, dtype)
