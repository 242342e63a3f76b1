"""Isometry gap and its predicted decay with depth (meterez2024).

For n representations (rows of X, shape n × d) with Gram matrix G = X Xᵀ the isometry gap is

    φ(G) = log(tr G / n) − (1/n) log det G = log(mean λ_i) − mean(log λ_i) ≥ 0,

the log ratio of the arithmetic to the geometric mean of the eigenvalues of G: 0 exactly when
G is a multiple of the identity (orthogonal rows of equal norm), and +∞ once G is singular
(rank collapse).

meterez2024 (claim 1) bounds its expectation for a linear MLP of width d with batch norm and
Haar-orthogonal weights: E φ(X_ℓ) ≤ φ(X_0) e^{−ℓ/k}, k = c d² (1 + d φ(X_0)), c an
unspecified constant. The paper also bounds E log ‖∇_{W_ℓ} L‖ by a function of d and φ(X_0)
alone; that function is not given in closed form in our source, so no helper computes it.

Example:
    >>> import numpy as np
    >>> round(isometry_gap(np.diag([1.0, 1.0, 4.0])), 12)  # log 2 − (log 4)/3 = (log 2)/3
    0.231049060187
"""

from __future__ import annotations

import numpy as np

from normscope.errors import ConfigError


def _symmetric(gram: np.ndarray) -> np.ndarray:
    g = np.asarray(gram, dtype=float)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 1:
        raise ConfigError(f"gram must be a square n × n matrix, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ConfigError("gram has NaN or infinite entries; check the representations")
    scale = max(np.max(np.abs(g)), np.finfo(float).tiny)
    if np.max(np.abs(g - g.T)) > 1e-8 * scale:
        raise ConfigError("gram must be symmetric (G = X Xᵀ); got a non-symmetric matrix")
    return (g + g.T) / 2.0


def _complement_of_ones(n: int) -> np.ndarray:
    """Orthonormal basis (n × (n − 1)) of the subspace orthogonal to the all-ones vector."""
    basis, _ = np.linalg.qr(np.column_stack([np.ones(n), np.eye(n)[:, : n - 1]]))
    return basis[:, 1:]


def isometry_gap(gram: np.ndarray, *, mean_subtracted: bool = False) -> float:
    """Isometry gap φ(G) = log(tr G / n) − (1/n) log det G of a Gram matrix (meterez2024).

    Args:
        gram: symmetric positive semi-definite n × n matrix G = X Xᵀ.
        mean_subtracted: the representations were centred over the batch, so G 1 = 0 and
            G has rank ≤ n − 1. The all-ones direction is then projected out: φ is taken of
            Qᵀ G Q with Q an orthonormal basis of 1^⊥ (n − 1 eigenvalues), and is 0 iff
            G = c (I − 11ᵀ/n), the most isometric centred Gram matrix. No ε is added, so
            the value does not depend on a regularization constant.

    Returns:
        φ ≥ 0, or ``inf`` when G (on 1^⊥ if centred) is singular: eigenvalues at or below
        n · machine-epsilon · λ_max count as zero, the same rank rule as numpy's matrix_rank.
    """
    g = _symmetric(gram)
    if mean_subtracted:
        if g.shape[0] < 2:
            raise ConfigError("mean_subtracted needs n >= 2 representations")
        basis = _complement_of_ones(g.shape[0])
        g = basis.T @ g @ basis
    eigenvalues = np.linalg.eigvalsh(g)
    top = eigenvalues[-1]
    if top <= 0 or eigenvalues[0] <= top * g.shape[0] * np.finfo(float).eps:
        return float("inf")
    gap = np.log(np.mean(eigenvalues)) - np.mean(np.log(eigenvalues))
    return float(max(gap, 0.0))


def isometry_gap_bound(
    depth: float | np.ndarray, d: int, phi0: float, c: float
) -> float | np.ndarray:
    """Upper bound φ(X_0) e^{−ℓ/k}, k = c d² (1 + d φ(X_0)), on E φ(X_ℓ) (meterez2024, claim 1).

    Args:
        depth: layer index ℓ >= 0 (scalar or array).
        d: width (= batch size n in the paper's setting), >= 1.
        phi0: isometry gap of the inputs, φ(X_0) >= 0.
        c: the paper's unspecified positive constant; fit it or bound it from measurements.
    """
    if int(d) != d or d < 1:
        raise ConfigError(f"d must be a positive integer width, got {d!r}")
    if not phi0 >= 0 or not np.isfinite(phi0):
        raise ConfigError(f"phi0 must be a finite isometry gap >= 0, got {phi0!r}")
    if not c > 0:
        raise ConfigError(f"c must be > 0, got {c!r}")
    ell = np.asarray(depth, dtype=float)
    if np.any(ell < 0):
        raise ConfigError(f"depth must be >= 0, got {depth!r}")
    decay_length = c * d**2 * (1.0 + d * phi0)
    bound = phi0 * np.exp(-ell / decay_length)
    return float(bound) if bound.ndim == 0 else bound
