"""Hebbian unlearning (Hopfield-Feinstein-Palmer 1983): dreaming of spurious attractors.

Starting from Hebb, relax a random state to its attractor s* with the zero-temperature
asynchronous dynamics and weaken it, J -= eps s* s*^T / N (zero diagonal); repeat.
Spurious states are hit more often than memories, so they are removed first and the
stability of the memories grows, up to alpha ~ 0.6 with the right number of dreams.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from amsweep.pipeline.dynamics._ising_kernels import SEED_HIGH, TIE_RTOL, relax_zero_t
from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, hebb_couplings, require_ising

PARAMS: dict[str, Param] = {
    "eps": Param(0.01, float, "unlearning strength per dream", low=0.0, open_low=True),
    "n_unlearn": Param(1000, int, "number of dreams", low=0),
    "max_sweeps": Param(100, int, "sweep budget of each dream's relaxation", low=1),
}
POTTS = False
QUICK = {"n_unlearn": 50}  # the conformance kit's settings: the default takes seconds at N = 32


@njit(cache=True)
def _unlearn(J: np.ndarray, seed: int, n_unlearn: int, eps: float, max_sweeps: int) -> int:
    """Dream n_unlearn times on the symmetric float64 J, in place; return #converged dreams.

    J stays symmetric, so J itself serves as the contiguous J^T of the relaxation kernel.
    """
    N = J.shape[0]
    np.random.seed(seed)
    S = np.empty((1, N), np.int8)
    H = np.empty((1, N))
    tol = np.empty(N)
    seeds = np.empty(1, np.int64)
    conv = np.zeros(1, np.bool_)
    sweeps = np.zeros(1, np.int32)
    c = eps / N
    n_conv = 0
    for _ in range(n_unlearn):
        for i in range(N):
            S[0, i] = 1 if np.random.random() < 0.5 else -1
        for i in range(N):
            acc = 0.0
            a = 0.0
            for j in range(N):
                acc += J[i, j] * S[0, j]
                a += abs(J[i, j])
            H[0, i] = acc
            tol[i] = TIE_RTOL * a
        seeds[0] = np.random.randint(0, 2**31 - 1)
        relax_zero_t(S, H, J, tol, seeds, max_sweeps, conv, sweeps)
        n_conv += conv[0]
        s = S[0]
        for i in range(N):
            for j in range(N):
                if i != j:
                    J[i, j] -= c * s[i] * s[j]
    return n_conv


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Hebb followed by n_unlearn dreams."""
    require_ising(q, "unlearning")
    J = hebb_couplings(as_spins(X)).astype(np.float64)
    seed = int(rng.integers(0, SEED_HIGH))
    n = int(params["n_unlearn"])
    conv = _unlearn(J, seed, n, float(params["eps"]), int(params["max_sweeps"]))
    info = {"dreams": n, "dreams_converged": int(conv)}
    return Model(q=2, J=J.astype(np.float32), params={}, info=info)
