"""Zero-temperature asynchronous Potts dynamics: s_i <- argmax_a h_i(a), sites in random order.

Fields h_i(a) = sum_j J[i,a,j,s_j] are built once per state and then kept up to date on each
change of s_j from b to c (h += J[:, :, j, c] - J[:, :, j, b], O(N q)), so a sweep costs
O(N q + changes * N q), not O(N^2 q). The initial fields are a gather of N slabs of J
(O(N^2 q)), q times cheaper than the one-hot matrix product. Fields are float64 so that
thousands of incremental updates do not drift from the fields of the current state (ties
are decided by exact comparisons). Ties with the current state keep it; for symmetric J each
change strictly lowers E = -1/2 sum_ij J[i,s_i,j,s_j], so the dynamics ends at a fixed point.
Randomness: one integer seed per state from the caller's Generator and its own generator
(``_random_order``), so a state's trajectory does not depend on its position in the batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from amsweep.pipeline.dynamics._random_order import SEED_HIGH, new_state, shuffle
from amsweep.pipeline.model import Model, NotApplicable, Relaxation
from amsweep.pipeline.potts import check_states


def potts_couplings(model: Model) -> np.ndarray:
    """The (N, q, N, q) couplings of a Potts model; NotApplicable if there are none."""
    if model.J is None:
        raise NotApplicable("asynchronous Potts dynamics needs couplings J; this model has none")
    J = np.asarray(model.J)
    q = model.q
    if J.ndim != 4 or J.shape[1] != q or J.shape[3] != q or J.shape[0] != J.shape[2]:
        raise NotApplicable(f"Potts dynamics needs J of shape (N, {q}, N, {q}), got {J.shape}")
    return J


@njit(cache=True)
def relax_argmax(
    S: np.ndarray, JT: np.ndarray, seeds: np.ndarray, max_sweeps: int, converged: np.ndarray, sweeps: np.ndarray
) -> None:
    """Relax every state of the batch in place; JT[j, c] is the slab J[:, :, j, c] (N, q).

    A sweep visits the sites in a fresh random order; a sweep without change is a fixed point
    (converged, sweeps counts it); otherwise stop after max_sweeps (asymmetric J may cycle).
    """
    B, N = S.shape
    q = JT.shape[1]
    order = np.empty(N, np.int32)
    h = np.empty((N, q), np.float64)
    for b in range(B):
        rng = new_state(seeds[b])
        s = S[b]
        h[:, :] = 0.0
        for j in range(N):
            slab = JT[j, s[j]]
            for i in range(N):
                for a in range(q):
                    h[i, a] += slab[i, a]
        for k in range(N):
            order[k] = k
        done = False
        n = 0
        while n < max_sweeps:
            shuffle(order, rng)
            n += 1
            changes = 0
            for k in range(N):
                i = order[k]
                cur = s[i]
                best = cur
                top = h[i, cur]
                for a in range(q):
                    if h[i, a] > top:
                        top = h[i, a]
                        best = a
                if best != cur:
                    new_slab = JT[i, best]
                    old_slab = JT[i, cur]
                    for r in range(N):
                        for a in range(q):
                            h[r, a] += np.float64(new_slab[r, a]) - np.float64(old_slab[r, a])
                    s[i] = best
                    changes += 1
            if changes == 0:
                done = True
                break
        converged[b] = done
        sweeps[b] = n


def relax_async(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Zero-temperature asynchronous relaxation of B Potts states (B, N) int8 in 0..q-1."""
    J = potts_couplings(model)
    N, q = J.shape[:2]
    S = np.array(check_states(states, q), dtype=np.int8, order="C", copy=True)
    if S.shape[1] != N:
        raise ValueError(f"states must be (B, {N}), got {S.shape}")
    JT = np.ascontiguousarray(J.transpose(2, 3, 0, 1), dtype=np.float32)
    B = S.shape[0]
    seeds = rng.integers(0, SEED_HIGH, size=(B,), dtype=np.int64)
    converged = np.zeros(B, dtype=np.bool_)
    sweeps = np.zeros(B, dtype=np.int32)
    relax_argmax(S, JT, seeds, int(params["max_sweeps"]), converged, sweeps)
    return Relaxation(final=S, converged=converged, sweeps=sweeps)
