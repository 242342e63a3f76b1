"""The loss of one batch and its derivatives in output space: the one home of the loss.

A batch's loss is ``L_b = (1/c_b) sum_m l(f_m, y_m)``, the mean over its ``c_b``
*counted terms*:

- ``cross_entropy``: classes on the last output dimension; outputs ``(n, C)`` with labels
  ``(n,)``, or ``(n, T, C)`` with labels ``(n, T)`` (a language model: labels are used as
  given, aligned with the outputs, so a causal LM's shift by one is the caller's). A term
  is one label; labels equal to ``ignore_index`` are not counted. For a term with
  ``p = softmax(f)``: ``l = -log p_y``, gradient ``p - e_y``, Hessian
  ``Q = diag(p) - p p^T``, the Fisher information of the categorical distribution.
- ``mse``: ``l = 1/2 ||f - y||^2`` summed over every output of a sample, the mean taken
  over samples (so that gradient descent's stability threshold is exactly ``2/lr``). A
  term is one sample. Targets have the outputs' shape (``(n,)`` for outputs ``(n, 1)``);
  integer labels become one-hot targets over the last output dimension; nothing is ever
  broadcast. Gradient ``f - y``, Hessian ``I`` (the Fisher of a unit Gaussian).
- any callable ``loss_fn(output, target) -> scalar``, the mean loss of the batch; its
  derivatives are taken by autograd. A term is one sample; the empirical Fisher assumes
  the callable is a mean of per-sample terms.

The generalized Gauss-Newton matrix and the Fisher need a factor ``M`` with
``M^T M = Lambda``, ``Lambda`` the output Hessian (:meth:`Loss.fisher_factor`). For
cross-entropy it is ``M = (I - s s^T) diag(s)`` per term with ``s = sqrt(p)``: since
``||s|| = 1``, ``I - s s^T`` is a projector and ``M^T M = diag(s)(I - s s^T) diag(s) = Q``.
Applying it costs ``O(C)`` per term (no ``C x C`` block, no eigendecomposition), which
keeps a 50k-word vocabulary tractable and works in half precision.

Example:
    >>> import torch
    >>> loss = resolve_loss("cross_entropy")
    >>> out = torch.zeros(2, 3, 4)                      # (n, T, C): a sequence model
    >>> y = torch.tensor([[0, 1, -100], [2, 3, 1]])     # -100: not counted
    >>> loss.count(y), round(float(loss.value(out, y)), 4)
    (5, 1.3863)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from normscope.errors import ConfigError, DataError, ShapeError, unknown_name

NAMES = ("cross_entropy", "mse")
FISHER_KINDS = ("true", "ggn", "empirical", "ntk")
DEFAULT_IGNORE_INDEX = -100
# a callable loss's output Hessian is formed densely, (n D)^2 numbers per batch
MAX_DENSE_OUTPUTS = 4096


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


# ----------------------------------------------------------------------------- factors
class OutputFactor:
    """A linear map ``M`` from one batch's output space to ``rows`` numbers.

    ``apply(t)`` takes tangents ``(k, *out_shape)`` and returns ``(k, rows)``;
    ``transpose(w)`` takes ``(k, rows)`` and returns ``(k, *out_shape)``.
    """

    rows: int

    def apply(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def transpose(self, w: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class TermView:
    """Where the counted terms sit: rows ``index`` of the outputs seen as ``(R, width)``.

    ``class_dim`` 1 means the outputs hold the term's values in dimension 1 (PyTorch's
    ``(n, C, d1, ...)``); they are moved last before the rows are formed.
    """

    out_shape: tuple[int, ...]
    width: int
    index: Tensor
    class_dim: int = -1

    @property
    def num_terms(self) -> int:
        return int(self.index.numel())

    def gather(self, t: Tensor) -> Tensor:
        """``(k, *out_shape)`` -> the counted terms ``(k, c, width)``."""
        if self.class_dim == 1:
            t = t.movedim(2, -1)
        return t.reshape(t.shape[0], -1, self.width).index_select(1, self.index)

    def scatter(self, terms: Tensor) -> Tensor:
        """``(k, c, width)`` -> ``(k, *out_shape)``, zero at uncounted terms."""
        k = terms.shape[0]
        rows = math.prod(self.out_shape) // self.width
        full = terms.new_zeros(k, rows, self.width).index_copy(1, self.index, terms)
        if self.class_dim != 1:
            return full.reshape(k, *self.out_shape)
        n, classes, *rest = self.out_shape
        return full.reshape(k, n, *rest, classes).movedim(-1, 2)


class TermFactor(OutputFactor):
    """Block diagonal over counted terms: ``scale * B_m`` per term (``out_width x width``).

    ``forward(u)`` maps term tangents ``(k, c, width)`` to ``(k, c, out_width)``;
    ``backward(w)`` is its transpose.
    """

    def __init__(self, view: TermView, out_width: int, forward, backward, scale: float):
        self.view = view
        self.out_width = out_width
        self.forward = forward
        self.backward = backward
        self.scale = scale
        self.rows = view.num_terms * out_width

    def apply(self, t: Tensor) -> Tensor:
        return (self.scale * self.forward(self.view.gather(t))).reshape(t.shape[0], -1)

    def transpose(self, w: Tensor) -> Tensor:
        terms = w.reshape(w.shape[0], self.view.num_terms, self.out_width)
        return self.view.scatter(self.scale * self.backward(terms))


class DenseFactor(OutputFactor):
    """A dense ``rows x D`` matrix on the flattened outputs (a callable loss's Hessian root)."""

    def __init__(self, matrix: Tensor, out_shape: tuple[int, ...]):
        self.matrix = matrix
        self.out_shape = out_shape
        self.rows = matrix.shape[0]

    def apply(self, t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], -1).to(self.matrix) @ self.matrix.T

    def transpose(self, w: Tensor) -> Tensor:
        return (w.to(self.matrix) @ self.matrix).reshape(w.shape[0], *self.out_shape)


def _identity(u: Tensor) -> Tensor:
    return u


# ----------------------------------------------------------------------------- losses
class Loss:
    """A batch-mean loss with its output-space derivatives (module docstring)."""

    name: str
    has_likelihood: bool = True
    """Whether the output Hessian is the Fisher of a predictive distribution."""

    def check(self, out: Tensor, y: Tensor) -> None:
        """Raise ShapeError or DataError when ``out`` and ``y`` do not fit this loss."""

    def check_targets(self, y: Tensor, num_outputs: int) -> None:
        """Raise DataError for targets no output of width ``num_outputs`` fits (labels)."""

    def count(self, y: Tensor) -> int:
        """The counted terms of a batch with targets ``y``."""
        return int(y.shape[0])

    def num_outputs(self, out: Tensor, y: Tensor | None = None) -> int:
        """Outputs per loss term: the size of the class dimension (the last one here)."""
        return out.shape[-1] if out.ndim > 1 else 1

    def classes_last(self, out: Tensor, y: Tensor | None = None) -> Tensor:
        """``out`` with the class dimension last (as it is, here)."""
        return out

    def value(self, out: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def terms(self, out: Tensor, y: Tensor) -> TermView:
        """The counted terms: samples, unless the loss says otherwise."""
        index = torch.arange(out.shape[0], device=out.device)
        return TermView(_shape(out), math.prod(out.shape[1:]), index)

    def fisher_factor(self, out: Tensor, y: Tensor, kind: str) -> OutputFactor:
        """``M`` with ``M^T M`` the batch's Fisher-type matrix in output space.

        ``"ggn"`` (and ``"true"``, which needs a likelihood): the output Hessian of
        ``L_b``; ``"empirical"``: ``(1/c_b) sum_m r_m r_m^T`` with ``r_m`` the term
        gradients; ``"ntk"``: ``(1/c_b)`` times the identity on the counted terms.
        """
        if kind not in FISHER_KINDS:
            raise unknown_name("Fisher kind", kind, FISHER_KINDS)
        if kind == "true" and not self.has_likelihood:
            raise ConfigError(
                f"the true Fisher needs a likelihood, which loss {self.name!r} does not "
                "define: use kind='ggn' (the generalized Gauss-Newton matrix, which is the "
                "true Fisher for cross_entropy and mse) or kind='empirical'."
            )
        view = self.terms(out, y)
        scale = 1.0 / math.sqrt(max(view.num_terms, 1))
        if kind == "ntk":
            return TermFactor(view, view.width, _identity, _identity, scale)
        if kind == "empirical":
            r = self._term_gradients(out, y, view)  # (c, width)
            return TermFactor(
                view,
                1,
                lambda u: (u * r).sum(dim=-1, keepdim=True),
                lambda w: w * r,
                scale,
            )
        return self._hessian_factor(out, y, view, scale)

    def _term_gradients(self, out: Tensor, y: Tensor, view: TermView) -> Tensor:
        """``d l(f_m, y_m) / d f_m`` for the counted terms: ``(c, width)``."""
        raise NotImplementedError

    def _hessian_factor(self, out: Tensor, y: Tensor, view: TermView, scale: float):
        raise NotImplementedError


class CrossEntropy(Loss):
    """Softmax cross-entropy over the class dimension, with ``ignore_index``.

    ``class_dim``: ``-1`` (classes last: ``(n, C)`` or a language model's ``(n, T, C)``),
    ``1`` (PyTorch's convention ``(n, C, d1, ...)``: segmentation, per-position taggers),
    or ``None`` to take it from the labels' shape, refusing the outputs where both fit.
    """

    name = "cross_entropy"

    def __init__(
        self, ignore_index: int = DEFAULT_IGNORE_INDEX, class_dim: int | None = None
    ) -> None:
        if class_dim not in (None, -1, 1):
            raise ConfigError(
                f"class_dim must be -1 (classes last), 1 (classes in dimension 1, PyTorch's "
                f"convention) or None (from the labels' shape), got {class_dim!r}."
            )
        self.ignore_index = ignore_index
        self.class_dim = class_dim

    def _class_dim(self, out: Tensor, y: Tensor | None) -> int:
        if self.class_dim is not None or out.ndim < 3:
            return -1 if self.class_dim is None else self.class_dim
        last = y is None or _shape(y) == _shape(out)[:-1]
        first = y is not None and _shape(y) == _shape(out)[:1] + _shape(out)[2:]
        if last and first:
            raise ShapeError(
                f"outputs {_shape(out)} with labels {_shape(y)} fit classes in the last "
                "dimension and in dimension 1: say which with class_dim=-1 (language models) "
                "or class_dim=1 (PyTorch's (n, C, d1, ...), e.g. segmentation)."
            )
        return 1 if first else -1

    def classes_last(self, out: Tensor, y: Tensor | None = None) -> Tensor:
        return out.movedim(1, -1) if self._class_dim(out, y) == 1 else out

    def num_outputs(self, out: Tensor, y: Tensor | None = None) -> int:
        return self.classes_last(out, y).shape[-1] if out.ndim > 1 else 1

    def check(self, out: Tensor, y: Tensor) -> None:
        moved = self.classes_last(out, y) if out.ndim > 1 else out
        self.check_targets(y, moved.shape[-1] if out.ndim else 0)
        if out.ndim < 2 or _shape(y) != _shape(moved)[:-1]:
            raise ShapeError(
                f"loss 'cross_entropy' takes one label per row of classes: outputs (n, C) "
                f"take labels (n,), (n, T, C) take (n, T) and, with class_dim=1, "
                f"(n, C, d1, ...) take (n, d1, ...); got outputs {_shape(out)} and labels "
                f"{_shape(y)}."
            )

    def check_targets(self, y: Tensor, num_outputs: int) -> None:
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise DataError(
                f"loss 'cross_entropy' needs integer class labels, got targets of dtype "
                f"{str(y.dtype).removeprefix('torch.')}: use loss='mse' for real-valued "
                "targets, or pass a callable loss for soft labels."
            )
        counted = y[y != self.ignore_index]
        if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= num_outputs):
            raise DataError(
                f"labels lie in [{int(counted.min())}, {int(counted.max())}] but the model "
                f"outputs {num_outputs} classes: labels must lie in [0, {num_outputs - 1}] (or "
                f"equal ignore_index={self.ignore_index} to be left out)."
            )

    def count(self, y: Tensor) -> int:
        return int((y != self.ignore_index).sum())

    def value(self, out: Tensor, y: Tensor) -> Tensor:
        moved = self.classes_last(out, y)
        return F.cross_entropy(
            moved.reshape(-1, moved.shape[-1]), y.reshape(-1), ignore_index=self.ignore_index
        )

    def terms(self, out: Tensor, y: Tensor) -> TermView:
        index = torch.nonzero(y.reshape(-1) != self.ignore_index).reshape(-1)
        dim = self._class_dim(out, y)
        return TermView(_shape(out), out.shape[dim], index.to(out.device), dim)

    def _probabilities(self, out: Tensor, view: TermView) -> Tensor:
        return torch.softmax(view.gather(out.unsqueeze(0))[0], dim=-1)

    def _term_gradients(self, out: Tensor, y: Tensor, view: TermView) -> Tensor:
        p = self._probabilities(out, view)
        labels = y.reshape(-1).index_select(0, view.index)
        return p - F.one_hot(labels, view.width).to(p)

    def _hessian_factor(self, out: Tensor, y: Tensor, view: TermView, scale: float):
        p = self._probabilities(out, view)
        s = p.sqrt()
        return TermFactor(
            view,
            view.width,
            lambda u: s * u - s * (p * u).sum(dim=-1, keepdim=True),
            lambda w: s * w - p * (s * w).sum(dim=-1, keepdim=True),
            scale,
        )


class MeanSquaredError(Loss):
    """``1/2 ||f - y||^2`` summed over a sample's outputs, averaged over samples."""

    name = "mse"

    def targets(self, out: Tensor, y: Tensor) -> Tensor:
        """Targets in output space: as given, ``(n,)`` -> ``(n, 1)``, labels -> one-hot."""
        if y.is_floating_point():
            if _shape(y) == _shape(out):
                return y.to(out.dtype)
            if out.shape[-1] == 1 and _shape(y) == _shape(out)[:-1]:
                return y.unsqueeze(-1).to(out.dtype)
        elif y.dtype != torch.bool and out.ndim >= 2 and _shape(y) == _shape(out)[:-1]:
            classes = out.shape[-1]
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
                raise DataError(
                    f"labels lie in [{int(y.min())}, {int(y.max())}] but the model outputs "
                    f"{classes} values for one-hot targets: labels must lie in "
                    f"[0, {classes - 1}]."
                )
            return F.one_hot(y, classes).to(out.dtype)
        raise ShapeError(
            f"loss 'mse' needs targets shaped like the outputs {_shape(out)} (or "
            f"{_shape(out)[:-1]} when there is one output, or integer labels for one-hot "
            f"targets); got {_shape(y)} {str(y.dtype).removeprefix('torch.')}. Reshape the "
            "targets: mse never broadcasts."
        )

    def check(self, out: Tensor, y: Tensor) -> None:
        self.targets(out, y)

    def check_targets(self, y: Tensor, num_outputs: int) -> None:
        labels = not y.is_floating_point() and y.numel() > 0
        if labels and (int(y.min()) < 0 or int(y.max()) >= num_outputs):
            raise DataError(
                f"labels lie in [{int(y.min())}, {int(y.max())}] but the model outputs "
                f"{num_outputs} values for one-hot targets: labels must lie in "
                f"[0, {num_outputs - 1}]."
            )

    def value(self, out: Tensor, y: Tensor) -> Tensor:
        return 0.5 * (out - self.targets(out, y)).pow(2).sum() / out.shape[0]

    def _term_gradients(self, out: Tensor, y: Tensor, view: TermView) -> Tensor:
        return (out - self.targets(out, y)).reshape(out.shape[0], -1)

    def _hessian_factor(self, out: Tensor, y: Tensor, view: TermView, scale: float):
        return TermFactor(view, view.width, _identity, _identity, scale)


class CallableLoss(Loss):
    """A user's ``loss_fn(output, target) -> scalar`` batch mean; derivatives by autograd."""

    has_likelihood = False

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.fn = fn
        label = getattr(fn, "__qualname__", None) or type(fn).__name__
        self.name = f"callable:{label}"

    def value(self, out: Tensor, y: Tensor) -> Tensor:
        try:
            result = self.fn(out, y)
        except RuntimeError:
            # torch's own errors pass through: vmap and autograd fall back on them
            raise
        except Exception as err:  # a user's function failing is a user error
            raise ConfigError(
                f"loss {self.name} raised {type(err).__name__}: {err}. A loss callable is "
                "called as loss_fn(output, target) and returns the batch's mean loss."
            ) from err
        if not isinstance(result, Tensor) or result.numel() != 1:
            got = (
                f"a tensor of shape {_shape(result)}"
                if isinstance(result, Tensor)
                else type(result).__name__
            )
            raise ConfigError(
                f"loss {self.name} returned {got}; a loss callable must return the batch's "
                "mean loss as a scalar tensor (use reduction='mean')."
            )
        return result.reshape(())

    def check(self, out: Tensor, y: Tensor) -> None:
        probe = out.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                result = self.value(probe, y)
        except RuntimeError as err:
            raise ConfigError(
                f"loss {self.name} raised {type(err).__name__} on the first batch: {err}. A "
                "loss callable is called as loss_fn(output, target) and returns the batch's "
                "mean loss."
            ) from err
        if not result.requires_grad:
            raise ConfigError(
                f"loss {self.name}'s value does not depend on the model's output (it detached "
                "it, called .item() or went through NumPy): every derivative would be 0. "
                "Compute the loss with torch operations on the output."
            )

    def _gradient(self, out: Tensor, y: Tensor) -> Tensor:
        probe = out.detach().requires_grad_(True)
        with torch.enable_grad():
            return torch.autograd.grad(self.value(probe, y), probe)[0]

    def _term_gradients(self, out: Tensor, y: Tensor, view: TermView) -> Tensor:
        # a mean of per-sample terms: d l_i / d f_i = n dL_b / d f_i
        return (out.shape[0] * self._gradient(out, y)).reshape(out.shape[0], -1)

    def _hessian_apply(self, out: Tensor, y: Tensor, u: Tensor) -> Tensor:
        """``Lambda_b u`` for each ``u`` in ``(k, *out.shape)``, by double backward."""
        probe = out.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.value(probe, y), probe, create_graph=True)
            if not g.requires_grad:  # a loss linear in the output: Lambda = 0
                return torch.zeros_like(u)
            return torch.stack([torch.autograd.grad(g, probe, v, retain_graph=True)[0] for v in u])

    def _hessian_factor(self, out: Tensor, y: Tensor, view: TermView, scale: float):
        size = out.numel()
        if size > MAX_DENSE_OUTPUTS:
            raise ConfigError(
                f"the GGN of callable loss {self.name} forms the batch's output Hessian "
                f"densely, {size} x {size} here (over {MAX_DENSE_OUTPUTS}): use smaller "
                "batches (batch_size), a named loss ('cross_entropy', 'mse') or "
                "kind='empirical'."
            )
        eye = torch.eye(size, dtype=out.dtype, device=out.device).reshape(size, *out.shape)
        hessian = self._hessian_apply(out, y, eye).reshape(size, size).double()
        values, vectors = torch.linalg.eigh((hessian + hessian.T) / 2)
        # rounding of the autograd Hessian, in the dtype it was computed in
        noise = size * torch.finfo(out.dtype).eps * max(float(values.abs().max()), 1e-300)
        if float(values.min()) < -noise:
            raise ConfigError(
                f"the output Hessian of loss {self.name} is not positive semi-definite "
                f"(eigenvalue {float(values.min()):.3g}), so it has no GGN factor: use "
                "kind='empirical' or kind='ntk'."
            )
        root = values.clamp_min(0).sqrt().unsqueeze(1) * vectors.T
        return DenseFactor(root.to(out.dtype), _shape(out))


def resolve_loss(
    loss: str | Callable[[Tensor, Tensor], Tensor] | Loss,
    *,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    class_dim: int | None = None,
) -> Loss:
    """A :class:`Loss` from a name, a callable ``loss_fn(output, target)``, or a Loss."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        if loss == "cross_entropy":
            return CrossEntropy(ignore_index, class_dim)
        if loss == "mse":
            return MeanSquaredError()
        raise unknown_name("loss", loss, NAMES)
    if callable(loss):
        return CallableLoss(loss)
    raise ConfigError(
        f"loss must be 'cross_entropy', 'mse' or a callable loss_fn(output, target), got "
        f"{type(loss).__name__}."
    )
