"""Numba kernel of zero-temperature asynchronous dynamics on the dense-memory energy.

Why overlaps: E(s) = -sum_mu F(o_mu) with o_mu = xi^mu . s depends on s only through the K
overlaps, so the energy change of flipping s_i is sum_mu [F(o_mu) - F(o_mu - 2 xi_i^mu s_i)],
O(K) per site, and an accepted flip updates the overlaps in O(K): one sweep is O(N K).
For F(x) = exp(beta x) the two energies are compared as log-sum-exp values with a shared shift,
exact for any N (no normalisation of F by N, which would change the model, and no overflow).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EXP_MARGIN = 1e-12  # relative margin of the exp comparison: rounding must not flip a tie


@njit(cache=True)
def _poly_gain(XT: np.ndarray, o: np.ndarray, i: int, si: float, n: int) -> float:
    """Energy decrease sum_mu [F(o') - F(o)] of flipping site i for F(x) = x^n."""
    gain = 0.0
    for mu in range(o.shape[0]):
        new = o[mu] - 2.0 * XT[i, mu] * si
        gain += new**n - o[mu] ** n
    return gain


@njit(cache=True)
def _exp_accepts(XT: np.ndarray, o: np.ndarray, i: int, si: float, beta: float) -> bool:
    """True if log sum exp(beta o') > log sum exp(beta o) (energy decreases) for the flip of i."""
    K = o.shape[0]
    shift = -np.inf
    for mu in range(K):
        shift = max(shift, beta * o[mu], beta * (o[mu] - 2.0 * XT[i, mu] * si))
    old = 0.0
    new = 0.0
    for mu in range(K):
        old += np.exp(beta * o[mu] - shift)
        new += np.exp(beta * (o[mu] - 2.0 * XT[i, mu] * si) - shift)
    return new > old * (1.0 + _EXP_MARGIN)


@njit(cache=True)
def relax_batch(
    XT: np.ndarray, states: np.ndarray, use_exp: bool, n: int, beta: float, max_sweeps: int, seeds: np.ndarray
):
    """Asynchronous flips in a fresh random site order each sweep until a sweep flips nothing.

    Each cue b reseeds numba's generator with seeds[b], so its result does not depend on the batch.
    """
    N, K = XT.shape
    B = states.shape[0]
    final = states.copy()
    converged = np.zeros(B, dtype=np.bool_)
    sweeps = np.full(B, max_sweeps, dtype=np.int32)
    o = np.zeros(K)
    for b in range(B):
        np.random.seed(seeds[b])
        s = final[b]
        o[:] = 0.0
        for i in range(N):
            for mu in range(K):
                o[mu] += XT[i, mu] * s[i]
        for sweep in range(1, max_sweeps + 1):
            flips = 0
            for i in np.random.permutation(N):
                si = float(s[i])
                if use_exp:
                    accept = _exp_accepts(XT, o, i, si, beta)
                else:
                    accept = _poly_gain(XT, o, i, si, n) > 0.0
                if accept:
                    for mu in range(K):
                        o[mu] -= 2.0 * XT[i, mu] * si
                    s[i] = -s[i]
                    flips += 1
            if flips == 0:
                converged[b] = True
                sweeps[b] = sweep
                break
    return final, converged, sweeps
