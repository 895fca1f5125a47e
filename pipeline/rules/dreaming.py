"""Dreaming rule (Fachechi-Agliari-Barra): J = X^T (1 + t)(I + t C)^-1 X / N, C = X X^T / N.

Interpolates between Hebb (t = 0) and the projector (t -> inf): sleeping removes the
cross-talk of the correlation matrix C, raising the capacity from 0.138 towards 1.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, require_ising

PARAMS: dict[str, Param] = {
    "t": Param(
        1.0,
        float,
        "dreaming time t >= 0, finite (0 = Hebb; t -> inf approaches the projector, rule pseudo_inverse)",
        low=0.0,
    ),
}
POTTS = False


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Solve (I + t C) A = (1 + t) X (SPD, well conditioned for finite t) and J = X^T A / N."""
    require_ising(q, "dreaming")
    X64 = as_spins(X).astype(np.float64)
    P, N = X64.shape
    t = float(params["t"])
    M = t * (X64 @ X64.T) / N
    M[np.diag_indices(P)] += 1.0
    A = scipy.linalg.solve(M, (1.0 + t) * X64, assume_a="pos")
    J = (X64.T @ A / N).astype(np.float32)
    np.fill_diagonal(J, 0.0)
    return Model(q=2, J=J, params={}, info={})
