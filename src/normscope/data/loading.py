"""``load(name, ...)``: every data source behind one call, with common splits,
subsampling, train-statistics standardization and flattening."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from normscope.data.cifar10 import cifar10
from normscope.data.dataset import Dataset
from normscope.data.digits import digits
from normscope.data.gaussian import gaussian
from normscope.data.mnist import mnist
from normscope.data.mnist1d import mnist1d
from normscope.data.teacher import teacher
from normscope.errors import ConfigError, DataError, unknown_name

# Arguments ``load`` itself fills in; every other keyword of a source is an option.
_COMMON = ("split", "seed", "n", "root")


@dataclass(frozen=True)
class Source:
    """How ``load`` treats one data source.

    ``standardize``: default of the ``standardize`` argument, chosen so that every source's
    default inputs have zero mean and unit scale. ``stats``: standardize per input
    ``feature`` or per image ``channel`` (robust for pixels that are constant in the
    training images). ``flatten``: ``None`` for vector inputs, else the default of the
    ``flatten`` option that turns (N, C, H, W) images into (N, C·H·W) vectors.
    """

    make: Callable[..., Dataset]
    splits: tuple[str, ...]
    standardize: bool
    stats: Literal["feature", "channel"] = "feature"
    flatten: bool | None = None

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.make).parameters)

    @property
    def options(self) -> tuple[str, ...]:
        own = (p for p in self.parameters if p not in _COMMON)
        return (*own, "flatten") if self.flatten is not None else tuple(own)


_REAL_SPLITS = ("train", "test", "all")
SOURCES: dict[str, Source] = {
    "gaussian": Source(gaussian, ("train", "test"), standardize=False),
    "teacher": Source(teacher, ("train", "test"), standardize=False),
    "digits": Source(digits, _REAL_SPLITS, standardize=True, flatten=True),
    "mnist1d": Source(mnist1d, _REAL_SPLITS, standardize=False),
    "mnist": Source(mnist, _REAL_SPLITS, standardize=True, stats="channel", flatten=False),
    "cifar10": Source(cifar10, _REAL_SPLITS, standardize=True, stats="channel", flatten=False),
}


def names() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(SOURCES)


def check(
    name: str,
    *,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    standardize: bool | None = None,
    **options: Any,
) -> None:
    """Raise what :func:`load` would raise for ``name``, ``split``, ``n``, ``seed`` and the
    option names, without loading anything (option values are checked by the source
    when it loads). Experiment specs check every sweep point's data with it.

    Example:
        >>> check("digits", split="validation")
        Traceback (most recent call last):
        ...
        normscope.errors.ConfigError: data set 'digits' has no split 'validation'; valid splits: train, test, all.
    """  # noqa: E501
    source = _source(name)
    if split not in source.splits:
        raise ConfigError(
            f"data set {name!r} has no split {split!r}; valid splits: {', '.join(source.splits)}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"n must be a positive integer or None, got {n!r}.")
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        valid = ", ".join(source.options) or "none"
        raise ConfigError(
            f"data set {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {valid}."
        )


def flattens(name: str, options: dict[str, Any] | None = None) -> bool:
    """Whether ``load(name, **options)`` returns images flattened to vectors (digits by
    default; mnist and cifar10 with ``flatten=True``).

    Example:
        >>> flattens("digits"), flattens("digits", {"flatten": False}), flattens("mnist1d")
        (True, False, False)
    """
    source = _source(name)
    return source.flatten is not None and bool((options or {}).get("flatten", source.flatten))


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise unknown_name("data set", name, SOURCES)
    return SOURCES[name]


def _make(
    source: Source,
    name: str,
    split: str,
    seed: int,
    n: int | None,
    root: str | os.PathLike[str] | None,
    options: dict[str, Any],
) -> Dataset:
    params = source.parameters
    kwargs = {key: value for key, value in options.items() if key != "flatten"}
    if "seed" in params:
        kwargs["seed"] = seed
    if n is not None and "n" in params:
        kwargs["n"] = n
    if root is not None:
        if "root" not in params:
            files = [k for k, s in SOURCES.items() if "root" in s.parameters]
            raise ConfigError(
                f"data set {name!r} reads no files, so root does not apply "
                f"(it does for {', '.join(files)})."
            )
        kwargs["root"] = root
    return source.make(split, **kwargs)


def train_statistics(x: torch.Tensor, stats: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of training inputs, per feature or per channel (dim 1).

    A feature constant over the training set gets std 1, so it is only centred: dividing
    by a vanishing std would blow test inputs that vary there up to ~1e8.
    """
    dims = (0,) if stats == "feature" else (0, *range(2, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)[0]
    std = x.std(dim=dims, keepdim=True)[0]
    return mean, torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std, torch.ones_like(std))


def _training_split(
    source: Source,
    name: str,
    seed: int,
    n: int | None,
    root: str | os.PathLike[str] | None,
    options: dict[str, Any],
) -> Dataset:
    try:
        return _make(source, name, "train", seed, n, root, options)
    except DataError as err:
        raise DataError(
            f"{err} (The training split is read because standardize uses its statistics; "
            "pass standardize=False to load this split alone.)"
        ) from err


def _subsample(data: Dataset, n: int, seed: int, name: str, split: str) -> Dataset:
    if n > len(data):
        raise ConfigError(
            f"n={n} exceeds the {len(data)} samples of {name!r} split {split!r}; "
            f"give n <= {len(data)} or n=None for all."
        )
    return data.batch(n, seed=seed) if n < len(data) else data


def _flatten(data: Dataset) -> Dataset:
    return replace(data, x=data.x.reshape(len(data), -1))


def load(
    name: str,
    *,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    standardize: bool | None = None,
    **options: Any,
) -> Dataset:
    """Load data set ``name`` (see :func:`names`) as a :class:`Dataset`.

    ``split``: ``train``, ``test`` or (real data) ``all``. ``n``: for generated sources
    (gaussian, teacher) the number of samples drawn; for the others a subsample of ``n``
    drawn without replacement by ``seed``. ``seed`` also fixes synthetic draws and the
    digits train/test split, so the same arguments always give the same tensors.
    ``root``: folder of a file source (mnist, cifar10). ``standardize``: map inputs to
    (x - μ) / σ with μ, σ from the *training* split, for every split (``None``: the
    source's default, on for digits, mnist and cifar10). ``options``: source-specific
    keywords (e.g. ``dim``, ``task``, ``num_classes``, ``flatten``, ``num_samples``).

    Example:
        >>> data = load("gaussian", n=8, dim=3, task="regression", output_dim=2)
        >>> data.x.shape, data.y.shape
        (torch.Size([8, 3]), torch.Size([8, 2]))
    """
    check(name, split=split, n=n, seed=seed, **options)
    source = _source(name)
    data = _make(source, name, split, seed, n, root, options)
    if source.standardize if standardize is None else standardize:
        train = data if split == "train" else _training_split(source, name, seed, n, root, options)
        data = data.standardize(*train_statistics(train.x, source.stats))
    if n is not None and "n" not in source.parameters:
        data = _subsample(data, n, seed, name, split)
    if flattens(name, options):
        data = _flatten(data)
    return data
