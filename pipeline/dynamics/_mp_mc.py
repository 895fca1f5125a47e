"""Heat-bath (Glauber) Monte Carlo for the Hebbian network, written in terms of the patterns.

Why a private sampler: the TAP / AMP magnetisations are thermal averages <s_i>, and the direct
check is a long equilibrium run at the same beta. Keeping the P pattern overlaps o_mu = xi^mu . s
gives the zero-diagonal field h_i = (sum_mu xi_i^mu o_mu - P s_i) / N in O(P) per site and an O(P)
update per flip, so one sweep costs O(N P) and no N x N matrix is formed.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _chain(XT: np.ndarray, s: np.ndarray, beta: float, n_burn: int, n_sweeps: int, seed: int) -> np.ndarray:
    """Sequential-sweep heat bath; returns the time average of s over n_sweeps after n_burn."""
    np.random.seed(seed)
    N, P = XT.shape
    o = np.zeros(P)
    for i in range(N):
        for mu in range(P):
            o[mu] += XT[i, mu] * s[i]
    avg = np.zeros(N)
    for sweep in range(n_burn + n_sweeps):
        for i in range(N):
            acc = 0.0
            for mu in range(P):
                acc += XT[i, mu] * o[mu]
            h = (acc - P * s[i]) / N
            new = 1 if np.random.random() < 1.0 / (1.0 + np.exp(-2.0 * beta * h)) else -1
            if new != s[i]:
                for mu in range(P):
                    o[mu] += 2.0 * new * XT[i, mu]
                s[i] = new
        if sweep >= n_burn:
            for i in range(N):
                avg[i] += s[i]
    return avg / n_sweeps


def time_averaged_spins(
    patterns: np.ndarray, start: np.ndarray, beta: float, n_burn: int, n_sweeps: int, rng: np.random.Generator
) -> np.ndarray:
    """<s_i> (N,) estimated by one heat-bath chain at inverse temperature beta from ``start``."""
    XT = np.ascontiguousarray(np.asarray(patterns, dtype=np.float64).T)
    s = np.asarray(start, dtype=np.int64).copy()
    seed = int(rng.integers(0, 2**31 - 1))
    return _chain(XT, s, float(beta), int(n_burn), int(n_sweeps), seed)
