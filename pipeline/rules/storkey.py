"""Storkey's incremental rule: Hebbian learning minus the local-field cross-talk.

For each new pattern xi, with h_ij = sum_{k != i,j} W_ik xi_k:
  dW_ij = (xi_i xi_j - xi_i h_ji - h_ij xi_j) / N.
Since W_ii = 0 and xi_k^2 = 1, h_ij = h_i - W_ij xi_j with h = W xi, so
  dW = (xi xi^T - xi h^T - h xi^T + W + W^T) / N,
an O(N^2) fused pass per pattern (the loop over patterns is the rule itself).
Capacity grows like N / sqrt(2 ln N), above Hebb's N / (2 ln N) for error-free recall.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, require_ising

PARAMS: dict[str, Param] = {}
POTTS = False


@njit(cache=True)
def _storkey(X: np.ndarray) -> np.ndarray:
    """Apply the rule pattern by pattern to W = 0 (float64: P sequential updates)."""
    P, N = X.shape
    W = np.zeros((N, N))
    h = np.empty(N)
    inv_n = 1.0 / N
    for mu in range(P):
        xi = X[mu]
        for i in range(N):
            acc = 0.0
            row = W[i]
            for k in range(N):
                acc += row[k] * xi[k]
            h[i] = acc
        for i in range(N):
            for j in range(i + 1, N):
                # W stays symmetric, so W_ij + W_ji = 2 W_ij
                d = (xi[i] * xi[j] - xi[i] * h[j] - h[i] * xi[j] + 2.0 * W[i, j]) * inv_n
                W[i, j] += d
                W[j, i] += d
    return W


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Storkey couplings (symmetric, zero diagonal)."""
    require_ising(q, "storkey")
    W = _storkey(as_spins(X).astype(np.float64))
    return Model(q=2, J=W.astype(np.float32), params={}, info={})
