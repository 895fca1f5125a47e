"""Pseudo-inverse (projector) rule J = X^T C^-1 X / N, C = X X^T / N.

J s projects s onto the span of the patterns, so every pattern is a fixed point for
alpha < 1 whatever their correlations; the diagonal (~alpha) is removed as for Hebb.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, require_ising

PARAMS: dict[str, Param] = {}
POTTS = False

RCOND = 1e-10  # eigenvalues of C below RCOND * max are treated as zero (pseudo-inverse)


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Projector couplings from the eigendecomposition of C (one O(P^3) step).

    A singular C (P > N, repeated or dependent patterns) drops its null space: that is the
    Moore-Penrose pseudo-inverse, and ``info["pinv"]`` records that it was needed.
    """
    require_ising(q, "pseudo_inverse")
    X64 = as_spins(X).astype(np.float64)
    P, N = X64.shape
    w, V = np.linalg.eigh(X64 @ X64.T / N)
    keep = w > RCOND * max(w.max(), 0.0)
    B = V[:, keep].T @ X64  # (rank, N): the patterns in C's eigenbasis
    J = ((B.T / w[keep]) @ B / N).astype(np.float32)
    np.fill_diagonal(J, 0.0)
    rank = int(keep.sum())
    return Model(q=2, J=J, params={}, info={"pinv": rank < P, "rank": rank})
