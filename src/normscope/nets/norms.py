"""Normalization kinds, the modules normscope adds to torch's, and one factory for all.

Every kind is built by :func:`make_norm` from the number of features, the rank of the
tensor it will see and where the features sit (dimension 1 for vectors and feature maps,
the last dimension for token sequences). Torch's own modules are used wherever they exist
(``nn.BatchNorm1d/2d/3d``, ``nn.LayerNorm``, ``nn.RMSNorm``, ``nn.GroupNorm``,
``nn.InstanceNorm1d/2d/3d``) so that built models look standard. Weight normalization is a
reparametrization of a linear or convolutional layer, not a layer, and is applied by
:func:`apply_weight_norm`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.parametrizations import weight_norm

from normscope.errors import ConfigError

NORM_KINDS: tuple[str, ...] = (
    "none",
    "batch",
    "layer",
    "rms",
    "group",
    "instance",
    "weight",
    "dyt",
    "batch_rms",
)
"""Every normalization kind a spec or :func:`~normscope.nets.swap_norm` accepts."""


class BatchRMSNorm(_BatchNorm):
    r"""Batch norm of meterez2024: divide each feature by its root-mean-square over the batch.

    For an input of shape (N, C, \*) and feature c, with the mean taken over the batch and
    all trailing dimensions:

        mu_c = mean(x_c) if ``mean_subtraction`` else 0
        y_c = (x_c - mu_c) / sqrt(mean((x_c - mu_c)^2) + eps)

    No affine parameters (meterez2024 analyses the bare normalization). The module follows
    ``nn.BatchNorm``'s protocol so that code controlling batch norm controls it too: in
    training mode it uses batch statistics and, when ``track_running_stats`` is true,
    updates ``running_mean`` (only with mean subtraction; otherwise it stays 0),
    ``running_var`` (the biased statistic used for normalizing) and
    ``num_batches_tracked``; with ``track_running_stats`` false it updates nothing. In
    eval mode it uses the running statistics when they exist.
    """

    norm_kind = "batch_rms"

    def __init__(
        self,
        num_features: int,
        *,
        mean_subtraction: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=False,
            track_running_stats=track_running_stats,
        )
        self.mean_subtraction = mean_subtraction

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"BatchRMSNorm expects (N, C, ...) input, got shape {input.shape}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mean_subtraction={self.mean_subtraction}"

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        if not use_batch:
            return self._normalize(input, self.running_mean, self.running_var)
        dims = [d for d in range(input.dim()) if d != 1]
        mean = input.mean(dim=dims) if self.mean_subtraction else None
        centered = input if mean is None else input - _expand(mean, input)
        var = centered.pow(2).mean(dim=dims)
        if self.training and self.track_running_stats:
            self._update_running_stats(mean, var)
        return self._normalize(input, mean, var)

    def _normalize(self, input: Tensor, mean: Tensor | None, var: Tensor | None) -> Tensor:
        centered = input if mean is None else input - _expand(mean, input)
        return centered / _expand(torch.sqrt(var + self.eps), input)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor | None, var: Tensor) -> None:
        if self.running_var is None:
            return
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_var.lerp_(var.detach(), factor)
        if mean is not None:
            self.running_mean.lerp_(mean.detach(), factor)


class DyT(nn.Module):
    r"""Dynamic tanh (Zhu et al., 2025), a normalization-free stand-in for layer norm.

    y = gamma * tanh(alpha * x) + beta, with one learnable scalar alpha (initialized to
    ``alpha_init`` = 0.5) and per-feature gamma (ones), beta (zeros) over dimension
    ``dim`` (1 for (N, C, \*) inputs, -1 for token sequences (N, L, C)).
    """

    norm_kind = "dyt"

    def __init__(
        self, num_features: int, *, dim: int = 1, alpha_init: float = 0.5, affine: bool = True
    ) -> None:
        super().__init__()
        if dim not in (1, -1):
            raise ConfigError(f"DyT dim must be 1 or -1, got {dim}")
        self.num_features = num_features
        self.dim = dim
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def extra_repr(self) -> str:
        return f"{self.num_features}, dim={self.dim}, affine={self.weight is not None}"

    def forward(self, input: Tensor) -> Tensor:
        out = torch.tanh(self.alpha * input)
        if self.weight is None:
            return out
        return out * _expand(self.weight, input, self.dim) + _expand(self.bias, input, self.dim)


class ChannelRMSNorm(nn.Module):
    r"""RMS norm of a feature map (N, C, \*): the root-mean-square analogue of GroupNorm(1, C).

    y = x / sqrt(mean over (C, \*) of x^2 + eps) * weight_c, per sample. ``nn.RMSNorm``
    needs the trailing shape up front; this module does not, as ``nn.GroupNorm`` does not.
    """

    norm_kind = "rms"

    def __init__(self, num_features: int, *, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"

    def forward(self, input: Tensor) -> Tensor:
        dims = tuple(range(1, input.dim()))
        out = input * torch.rsqrt(input.pow(2).mean(dim=dims, keepdim=True) + self.eps)
        return out if self.weight is None else out * _expand(self.weight, input)


class TokenBatchNorm(nn.BatchNorm1d):
    """Batch norm over the feature (last) dimension of token sequences (N, L, C).

    ``nn.BatchNorm1d`` expects features in dimension 1; this subclass transposes around
    it, so statistics are taken per feature over batch and tokens, and it still is an
    ``nn.BatchNorm1d`` to every tool that controls batch norm.
    """

    norm_kind = "batch"

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 3:
            raise ValueError(f"TokenBatchNorm expects (N, L, C) input, got shape {input.shape}")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        return super().forward(input.transpose(1, 2)).transpose(1, 2)


def _expand(stat: Tensor, like: Tensor, dim: int = 1) -> Tensor:
    """Reshape a per-feature vector to broadcast against ``like`` along ``dim``."""
    shape = [1] * like.dim()
    shape[dim] = -1
    return stat.reshape(shape)


_BATCH_BY_NDIM = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
_INSTANCE_BY_NDIM = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}


def make_norm(
    kind: str,
    num_features: int,
    *,
    ndim: int | None,
    features_last: bool = False,
    groups: int = 8,
    mean_subtraction: bool = False,
    eps: float = 1e-5,
    affine: bool = True,
    where: str = "normalization layer",
) -> nn.Module:
    """Build a normalization module of ``kind`` for inputs of rank ``ndim``.

    Features sit in dimension 1 of (N, C, \\*) inputs, or last in token sequences (N, L, C)
    when ``features_last``. ``ndim`` None means the rank is unknown; kinds whose module
    depends on it (batch, instance) then raise. "layer" on feature maps is
    ``GroupNorm(1, C)`` (normalizes each sample over channels and positions), "rms" on
    feature maps is :class:`ChannelRMSNorm`. Raises ConfigError, naming ``where``, when the
    kind cannot normalize such inputs.
    """
    if kind in ("none", "weight"):
        raise ConfigError(f"{where}: {kind!r} is not a normalization module")
    if features_last and ndim != 2:
        return _make_token_norm(kind, num_features, ndim, eps=eps, affine=affine, where=where)
    return _make_channel_norm(
        kind,
        num_features,
        ndim,
        groups=groups,
        mean_subtraction=mean_subtraction,
        eps=eps,
        affine=affine,
        where=where,
    )


def _make_token_norm(
    kind: str, num_features: int, ndim: int | None, *, eps: float, affine: bool, where: str
) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(num_features, eps=eps, elementwise_affine=affine)
    if kind == "rms":
        return nn.RMSNorm(num_features, eps=eps, elementwise_affine=affine)
    if kind == "dyt":
        return DyT(num_features, dim=-1, affine=affine)
    if kind == "batch" and ndim == 3:
        return TokenBatchNorm(num_features, eps=eps, affine=affine)
    raise ConfigError(
        f"{where}: norm {kind!r} cannot normalize the features of token sequences "
        f"(N, L, C) (input rank {ndim}); use one of layer, rms, dyt, batch (rank 3), none"
    )


def _make_channel_norm(
    kind: str,
    num_features: int,
    ndim: int | None,
    *,
    groups: int,
    mean_subtraction: bool,
    eps: float,
    affine: bool,
    where: str,
) -> nn.Module:
    if kind == "layer":
        if ndim == 2:
            return nn.LayerNorm(num_features, eps=eps, elementwise_affine=affine)
        return nn.GroupNorm(1, num_features, eps=eps, affine=affine)
    if kind == "rms":
        if ndim == 2:
            return nn.RMSNorm(num_features, eps=eps, elementwise_affine=affine)
        return ChannelRMSNorm(num_features, eps=eps, affine=affine)
    if kind == "dyt":
        return DyT(num_features, dim=1, affine=affine)
    if kind == "batch_rms":
        return BatchRMSNorm(num_features, mean_subtraction=mean_subtraction, eps=eps)
    if kind == "group":
        return _make_group_norm(num_features, groups, eps=eps, affine=affine, where=where)
    if kind == "batch":
        return _by_ndim(_BATCH_BY_NDIM, kind, ndim, where)(num_features, eps=eps, affine=affine)
    if kind == "instance":
        return _by_ndim(_INSTANCE_BY_NDIM, kind, ndim, where)(num_features, eps=eps, affine=affine)
    raise ConfigError(f"{where}: unknown norm {kind!r}; valid: {', '.join(NORM_KINDS)}")


def _make_group_norm(
    num_features: int, groups: int, *, eps: float, affine: bool, where: str
) -> nn.Module:
    if groups < 1 or num_features % groups:
        raise ConfigError(
            f"{where}: group norm needs the {num_features} features to split into "
            f"groups={groups} equal groups; choose groups dividing {num_features} "
            f"or a width divisible by {groups}"
        )
    return nn.GroupNorm(groups, num_features, eps=eps, affine=affine)


def _by_ndim(table: dict[int, type[nn.Module]], kind: str, ndim: int | None, where: str) -> type:
    if ndim in table:
        return table[ndim]
    if ndim is None:
        raise ConfigError(
            f"{where}: the rank of this layer's input is unknown, and {kind} norm depends "
            "on it; pass `example_input` so the input shape can be recorded"
        )
    ranks = ", ".join(str(r) for r in sorted(table))
    extra = " (instance norm needs spatial or sequence positions)" if kind == "instance" else ""
    raise ConfigError(
        f"{where}: {kind} norm cannot normalize inputs of rank {ndim}{extra}; "
        f"it works on inputs of rank {ranks}"
    )


def apply_weight_norm(module: nn.Module) -> nn.Module:
    """Reparametrize ``module.weight`` as g * v / ||v|| per output unit (Salimans & Kingma 2016).

    Uses ``torch.nn.utils.parametrizations.weight_norm``; g is initialized to the row norms
    of the current weight, so the effective weight is unchanged.
    """
    return weight_norm(module, name="weight", dim=0)
