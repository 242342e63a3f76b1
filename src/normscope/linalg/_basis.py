"""An orthonormal basis grown block by block, and the orthogonalizations that keep it so.

Full orthogonalization (:meth:`Basis.project_out`) uses two passes of classical
Gram-Schmidt against all stored rows ("twice is enough", Giraud, Langou, Rozloznik 2005):
each pass is one pair of matrix products, so the cost is two GEMMs per block instead of a
Python loop over vectors. Lanczos calls it for blocks of several vectors and for random
restarts; single-vector Lanczos orthogonalizes selectively (:mod:`.lanczos`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from normscope.linalg._space import Space, gaussian


class Basis:
    """Orthonormal rows ``(size, dim)``, stored in one buffer of ``max_rows`` rows.

    The buffer is allocated once: memory for rows never written is not touched, and no
    row is ever copied to a larger buffer.
    """

    def __init__(self, space: Space, max_rows: int) -> None:
        self.space = space
        self.max_rows = min(max_rows, space.dim)
        self.size = 0
        self._data = torch.empty((self.max_rows, space.dim), dtype=space.dtype, device=space.device)

    @property
    def rows(self) -> Tensor:
        return self._data[: self.size]

    def slot(self) -> Tensor | None:
        """The next unused row, to write a vector into before appending it; None when full."""
        return self._data[self.size] if self.size < self.max_rows else None

    def append(self, block: Tensor) -> None:
        """Add the rows of ``block``; a row already written into :meth:`slot` is not copied."""
        needed = self.size + block.shape[0]
        if block.shape[0] != 1 or block.data_ptr() != self._data[self.size].data_ptr():
            self._data[self.size : needed] = block
        self.size = needed

    def project_out(self, block: Tensor) -> Tensor:
        """Remove the components of each row of ``block`` along the stored rows (CGS2)."""
        basis = self.rows
        if basis.shape[0] == 0:
            return block
        for _ in range(2):
            block = block - (block @ basis.T) @ basis
        return block

    def combine(self, coefficients: Tensor) -> Tensor:
        """Rows ``coefficients (r, size) @ rows``: Ritz vectors from their coordinates."""
        coefficients = coefficients.to(dtype=self.space.dtype, device=self.space.device)
        return coefficients @ self.rows


def _project_new(w: Tensor, new_rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Two Gram-Schmidt passes of ``w`` against the rows accepted so far in this block."""
    if not new_rows:
        return w, torch.zeros(0, dtype=torch.float64, device=w.device)
    stacked = torch.stack(new_rows)
    first = stacked @ w
    w = w - first @ stacked
    # These coefficients enter the projected matrix, so they are accumulated in float64.
    second = (stacked.double() @ w.double()).to(w.dtype)
    return w - second @ stacked, first.double() + second.double()


def _random_orthogonal(basis: Basis, new_rows: list[Tensor], gen: torch.Generator) -> Tensor | None:
    """A random unit vector orthogonal to the basis and ``new_rows``; None once none is left."""
    if basis.size + len(new_rows) >= basis.space.dim:
        return None
    z = gaussian(basis.space, 1, gen)
    before = z.norm()
    z, _ = _project_new(basis.project_out(z)[0], new_rows)
    after = z.norm()
    if not after > basis.space.eps**0.5 * before:
        return None
    return z / after


def orthonormalize_block(
    block: Tensor, basis: Basis, threshold: float, gen: torch.Generator
) -> tuple[Tensor, Tensor, int]:
    """Rows ``Q (r, dim)`` with ``block = L Q`` (``L`` is ``(b, r)``), orthogonal to ``basis``.

    ``block`` must already be orthogonal to ``basis`` (to the working accuracy of the
    caller). A row whose remaining norm is at most ``threshold`` spans nothing new (an
    invariant subspace was reached); it is replaced by a random unit vector orthogonal to
    everything so far, with a zero coefficient in ``L``. Returns ``(Q, L, restarts)``;
    ``r < b`` only when the whole space is exhausted.
    """
    b = block.shape[0]
    coefficients = torch.zeros((b, b), dtype=torch.float64)
    new_rows: list[Tensor] = []
    restarts = 0
    for i in range(b):
        w, along_new = _project_new(block[i], new_rows)
        coefficients[i, : len(new_rows)] = along_new.cpu()
        norm = float(w.double().norm())
        if norm > threshold:
            coefficients[i, len(new_rows)] = norm
            new_rows.append(w / norm)
            continue
        fresh = _random_orthogonal(basis, new_rows, gen)
        if fresh is not None:
            restarts += 1
            new_rows.append(fresh)
    space = basis.space
    q = torch.stack(new_rows) if new_rows else block.new_zeros((0, space.dim))
    return q, coefficients[:, : len(new_rows)], restarts
