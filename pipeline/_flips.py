"""The kernel of ``metrics.corrupt``: flip, in each row, the sites of its k smallest random draws.

``corrupt`` used to take ``np.argsort(u, axis=1)[:, :k]`` of the row draws u and flip those sites
through flat indices: ~6 numpy calls and a full sort of every row, 14-20 us of a small cell's
(N = 32, B <= 32) ~1 ms for each of its six corrupted batches. Only which k sites come first
matters (a flip's order changes nothing), so one pass per row keeps the k smallest draws in
insertion order: the same sites wherever the draws differ (ties, of probability ~2^-53 a pair,
go to the lower site: numpy's unstable argsort leaves their order to its sort kernel), and the
same draws taken from the generator, so every start is unchanged (tests/test_small_cell.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def flip_smallest(out: np.ndarray, u: np.ndarray, k: int) -> None:
    """Negate out[b, j] for the k sites j of the smallest u[b, j] in each row b (1 <= k <= N)."""
    B, N = u.shape
    val = np.empty(k)
    idx = np.empty(k, np.int64)
    for b in range(B):
        n = 0  # the n smallest draws so far, increasing, in val/idx
        for j in range(N):
            v = u[b, j]
            if n == k and not v < val[k - 1]:
                continue
            p = n if n < k else k - 1  # a full list drops its largest
            while p > 0 and v < val[p - 1]:
                val[p] = val[p - 1]
                idx[p] = idx[p - 1]
                p -= 1
            val[p] = v
            idx[p] = j
            if n < k:
                n += 1
        for j in range(k):
            out[b, idx[j]] = -out[b, idx[j]]
