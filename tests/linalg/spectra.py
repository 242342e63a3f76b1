"""Dense symmetric test matrices with a prescribed spectrum: ``A = Q diag(lam) Q^T``."""

from __future__ import annotations

import torch
from torch import Tensor


def orthogonal(dim: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with sign-fixed R)."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def with_spectrum(eigenvalues: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(A, Q)`` with ``A = Q diag(eigenvalues) Q^T`` symmetrized; column ``i`` of ``Q`` is
    the eigenvector of ``eigenvalues[i]``."""
    q = orthogonal(eigenvalues.shape[0], seed, eigenvalues.dtype)
    a = (q * eigenvalues) @ q.T
    return (a + a.T) / 2, q


def random_spectrum(dim: int, seed: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Gaussian bulk plus a few separated outliers on both sides, like a network Hessian."""
    gen = torch.Generator().manual_seed(seed)
    lam = torch.randn(dim, generator=gen, dtype=torch.float64)
    lam[:3] = torch.tensor([12.0, 9.0, 7.0])
    lam[3:5] = torch.tensor([-6.0, -4.5])
    return lam.to(dtype)
