"""Fused elementwise kernels of Ising PLM training.

An epoch is two float32 GEMMs (H = X J^T, G = R^T X); everything between and after them
is done here in single passes, in place, so that no (P, N) or (N, N) temporaries other than
the reused buffers are allocated per epoch. Measured at N = 1000, P = 1500 on one core:
GEMMs 21 + 25 ms, residual 7 ms, step 1 ms.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# fast math without 'nnan'/'ninf': the residual is a gradient (no exactness at stake), but
# non-finite fields must survive to be detected.
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, fastmath=FAST)
def residual(H: np.ndarray, X: np.ndarray, lam: float) -> float:
    """Overwrite float32 H with R = X - tanh(lam H); return the sum of the fields.

    tanh(lam u) = 2 / (1 + exp(-2 lam u)) - 1 costs one float32 exp (the epoch's only transcendental,
    vectorised by LLVM); exp overflow gives the right limit tanh = +-1. The returned sum is
    finite iff every field is: the NaN/overflow check of the trainer, at no extra pass.
    """
    P, N = H.shape
    total = 0.0
    two_lam = np.float32(2.0 * lam)
    one = np.float32(1.0)
    two = np.float32(2.0)
    for m in range(P):
        h = H[m]
        x = X[m]
        for i in range(N):
            u = h[i]
            total += u
            h[i] = x[i] + one - two / (one + np.exp(-two_lam * u))
    return total


@njit(cache=True)
def loglik(H: np.ndarray, X: np.ndarray, lam: float) -> float:
    """Sum of lam x h - log 2cosh(lam h) over H (not modified), in float64.

    log 2cosh(u) = |u| + log1p(exp(-2|u|)) stays finite for large |u| (the T -> 0 regime).
    Computed once after training: it is the reported objective, not part of the epoch.
    """
    P, N = H.shape
    total = 0.0
    for m in range(P):
        for i in range(N):
            u = lam * H[m, i]
            x = X[m, i]
            a = abs(u)
            total += x * u - (a + np.log1p(np.exp(-2.0 * a)))
    return total


@njit(cache=True)
def apply_step(
    J: np.ndarray,
    G: np.ndarray,
    backup: np.ndarray,
    gscale: float,
    lr: float,
    l2: float,
    clip: float,
    symmetric: bool,
) -> None:
    """J += lr * (gscale * G - 2 l2 J), in place, after saving J in backup.

    G arrives as the raw product R^T X; gscale = lam / batch size makes it the gradient of
    the per-pattern mean log-pseudo-likelihood, to which the L2 term is then added.
    symmetric: G <- (G + G^T) / 2, the gradient of the likelihood restricted to J = J^T
    (up to a factor 2 absorbed in the step). clip: rescale rows whose gradient norm exceeds
    clip; in the symmetric case the whole gradient is rescaled by the worst row, so that
    J stays symmetric. The diagonal stays zero.
    """
    N = J.shape[0]
    for i in range(N):
        for j in range(N):
            backup[i, j] = J[i, j]
    if symmetric:
        for i in range(N):
            for j in range(i + 1, N):
                g = 0.5 * gscale * (G[i, j] + G[j, i])
                G[i, j] = g
                G[j, i] = g
    else:
        for i in range(N):
            for j in range(N):
                G[i, j] *= gscale
    for i in range(N):
        G[i, i] = 0.0
        if l2 > 0.0:
            for j in range(N):
                G[i, j] -= 2.0 * l2 * J[i, j]
    scale = np.ones(N)
    if clip > 0.0:
        worst = 1.0
        for i in range(N):
            nrm = 0.0
            for j in range(N):
                nrm += G[i, j] * G[i, j]
            nrm = np.sqrt(nrm)
            if nrm > clip:
                scale[i] = clip / nrm
                worst = min(worst, scale[i])
        if symmetric:
            scale[:] = worst
    for i in range(N):
        c = lr * scale[i]
        for j in range(N):
            J[i, j] += c * G[i, j]
        J[i, i] = 0.0
