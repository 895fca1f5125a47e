"""Potts Hebb rule (Kanter 1988): couplings from the centred one-hot covariance.

J[i,a,j,b] = (1/N) sum_mu (delta(xi_i, a) - 1/q)(delta(xi_j, b) - 1/q), zero i == j blocks.
Centring by 1/q removes the bias every uniform random state would otherwise feel towards
each pattern (the one-hot vectors of two random states overlap by N/q on average), so that
for random patterns a stored pattern is a fixed point up to a load of order q(q-1)/2 times
the Ising one. One float32 matrix product on the (P, N q) encodings.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model
from amsweep.pipeline.potts import check_states, one_hot


def hebb_potts_couplings(X: np.ndarray, q: int) -> np.ndarray:
    """Flat (N q, N q) float32 Hebb couplings; also PLM's starting point."""
    X = check_states(X, q)
    N = X.shape[1]
    C = one_hot(X, q)
    C -= np.float32(1.0 / q)
    J = C.T @ C
    J = (J + J.T) * np.float32(0.5 / N)  # BLAS need not return C^T C bitwise symmetric
    J4 = J.reshape(N, q, N, q)
    J4[np.arange(N), :, np.arange(N), :] = 0.0
    return J


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Hebbian Potts couplings (no parameters, no randomness)."""
    J = hebb_potts_couplings(X, q)
    N = J.shape[0] // q
    return Model(q=q, J=J.reshape(N, q, N, q), params={}, info={})
