"""The one data type of normscope: inputs, labels, task, classes, name."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from normscope.errors import ConfigError, DataError

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (N, ...) and targets ``y``.

    Classification: ``y`` holds integer labels in ``[0, num_classes)``.
    Regression: ``y`` holds float targets (N, D) or is ``None`` for unlabelled data
    (measures that need labels then raise a :class:`DataError`).
    """

    x: torch.Tensor
    y: torch.Tensor | None
    task: Task = "classification"
    num_classes: int | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor):
            object.__setattr__(self, "x", torch.as_tensor(self.x))
        if self.y is not None and not isinstance(self.y, torch.Tensor):
            object.__setattr__(self, "y", torch.as_tensor(self.y))
        if self.task not in ("classification", "regression"):
            raise ConfigError(f"task must be 'classification' or 'regression', got {self.task!r}.")
        if self.x.ndim == 0 or self.x.shape[0] == 0:
            raise DataError(f"data set {self.name!r} is empty: give at least one sample.")
        if self.y is not None and self.y.shape[0] != self.x.shape[0]:
            raise DataError(
                f"data set {self.name!r} has {self.x.shape[0]} inputs but {self.y.shape[0]} "
                "targets: give one target per input."
            )
        if self.task == "classification" and self.y is not None:
            self._check_labels()

    def _check_labels(self) -> None:
        y = self.y
        if y.is_floating_point() or y.ndim != 1:
            raise DataError(
                f"classification labels of {self.name!r} must be a 1-D integer tensor, got "
                f"dtype {y.dtype} and shape {tuple(y.shape)}; use task='regression' for "
                "float targets."
            )
        # num_classes stays None unless given: labels need not cover every class, so the
        # largest label says little; a Subject takes the classes from the model's output
        n_classes = self.num_classes if self.num_classes is not None else int(y.max()) + 1
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            raise DataError(
                f"labels of {self.name!r} lie in [{lo}, {hi}] but num_classes={n_classes}: "
                f"labels must lie in [0, {n_classes - 1}]."
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def output_dim(self) -> int:
        """Outputs a model needs: classes for classification, target width for regression."""
        if self.task == "classification":
            if self.num_classes is not None:
                return int(self.num_classes)
            return 1 if self.y is None else int(self.y.max()) + 1
        if self.y is None:
            raise DataError(f"data set {self.name!r} has no targets, so no output width.")
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])

    def subset(self, index: torch.Tensor) -> Dataset:
        y = None if self.y is None else self.y[index]
        return replace(self, x=self.x[index], y=y)

    def batch(self, n: int, seed: int = 0) -> Dataset:
        """A random subset of ``n`` samples without replacement, the same for the same seed."""
        if not 0 < n <= len(self):
            raise ConfigError(f"batch size must lie in [1, {len(self)}], got {n}.")
        gen = torch.Generator().manual_seed(seed)
        return self.subset(torch.randperm(len(self), generator=gen)[:n])

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Deterministic shuffled split into (train, test)."""
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
        n_test = max(1, round(len(self) * test_fraction))
        if n_test >= len(self):
            raise DataError(f"{len(self)} samples are too few to split off {n_test} for testing.")
        gen = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=gen)
        return self.subset(perm[n_test:]), self.subset(perm[:n_test])

    def standardize(
        self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ) -> Dataset:
        """Zero mean, unit variance per input feature (statistics of this set unless given)."""
        x = self.x.to(torch.get_default_dtype()) if not self.x.is_floating_point() else self.x
        mean = x.mean(dim=0) if mean is None else mean
        std = x.std(dim=0) if std is None else std
        return replace(self, x=(x - mean) / std.clamp_min(1e-8))

    def to(self, dtype: torch.dtype) -> Dataset:
        """Inputs (and regression targets) cast to ``dtype``; integer labels kept."""
        y = self.y
        if y is not None and y.is_floating_point():
            y = y.to(dtype)
        return replace(self, x=self.x.to(dtype), y=y)
