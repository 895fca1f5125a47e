"""Numba kernel of the online Chinese-restaurant-process (Pitman-Yor) memory assignment.

Why a kernel: the pass is sequential by nature (each example sees the memories created by the
previous ones), so it cannot be a matrix product; one example costs O(K N) for the distances.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def crp_pass(V: np.ndarray, alpha: float, d: float, beta: float, c: float):
    """Assign the rows of V in order; return (means (K, N), counts (K,), assignment (P,)).

    For an example v with K memories of counts n_k and means mu_k, the energy
    E(v) = -(1/beta) log[(alpha + d K) exp(-c |v|^2) + sum_k (n_k - d) exp(-beta |mu_k - v|^2)]
    has a "new cluster" term and one term per memory. A new memory (mean v, count 1) is created
    when the new term exceeds the sum of the others; otherwise the nearest memory absorbs v
    (count + 1, running mean).
    """
    P, N = V.shape
    means = np.zeros((P, N))
    sq = np.zeros(P)  # |mu_k|^2, kept so that |mu_k - v|^2 = |mu_k|^2 - 2 mu_k . v + |v|^2
    counts = np.zeros(P, dtype=np.int64)
    assign = np.zeros(P, dtype=np.int64)
    K = 0
    for t in range(P):
        v = V[t]
        vv = 0.0
        for i in range(N):
            vv += v[i] * v[i]
        weight_new = alpha + d * K
        log_new = np.log(weight_new) - c * vv if weight_new > 0.0 else -np.inf
        best = -1
        best_dist = np.inf
        log_terms = np.empty(K)
        for k in range(K):
            dot = 0.0
            for i in range(N):
                dot += means[k, i] * v[i]
            dist = max(sq[k] - 2.0 * dot + vv, 0.0)
            log_terms[k] = np.log(counts[k] - d) - beta * dist
            if dist < best_dist:
                best_dist = dist
                best = k
        log_old = -np.inf
        if K > 0:
            top = log_terms.max()
            log_old = top + np.log(np.sum(np.exp(log_terms - top)))
        if K == 0 or log_new > log_old:
            best = K
            K += 1
        counts[best] += 1
        rate = 1.0 / counts[best]
        s = 0.0
        for i in range(N):
            means[best, i] += rate * (v[i] - means[best, i])
            s += means[best, i] * means[best, i]
        sq[best] = s
        assign[t] = best
    return means[:K].copy(), counts[:K].copy(), assign
