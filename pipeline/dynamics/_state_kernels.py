"""Kernels of a small cell's starts and overlaps (``metrics``), each the same values as the numpy
expressions it replaced, in one call instead of 4-6 numpy calls of ~1-3 us each (issue 26).

``flip_smallest`` (``metrics.corrupt``): flip, in each row, the sites of its k smallest random draws.
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


# Integer states (int8) up to this many sites: every partial sum of products is an integer of
# magnitude <= 2^24 (|a b| <= 128^2 = 2^14 per site), exact in float32 in any summation order, so
# the float32 GEMM/einsum of the numpy path gives these very integers, and one float32 division by
# N (what numpy's float32 array / N is) gives the same bits.
EXACT_SITES = 2**24 // (128 * 128)


@njit(cache=True)
def int_overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise (1/N) a.b of two (B, N) int8 arrays, float32: ``metrics.overlap``'s einsum values."""
    B, N = a.shape
    out = np.empty(B, np.float32)
    n = np.float32(N)
    for r in range(B):
        s = 0
        for i in range(N):
            s += np.int32(a[r, i]) * np.int32(b[r, i])
        out[r] = np.float32(s) / n
    return out


@njit(cache=True)
def int_best_overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row of a (B, N), the largest (1/N) a.b_k over the K >= 1 rows of b, float32 (int8 input).

    ``max(fl(s_k / N)) == fl(max(s_k) / N)``: correctly rounded division by N > 0 keeps the order.
    """
    B, N = a.shape
    K = b.shape[0]
    out = np.empty(B, np.float32)
    n = np.float32(N)
    for r in range(B):
        best = -(2**31)
        for k in range(K):
            s = 0
            for i in range(N):
                s += np.int32(a[r, i]) * np.int32(b[k, i])
            if s > best:
                best = s
        out[r] = np.float32(best) / n
    return out


@njit(cache=True)
def equal_rows(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows of a equal b's (same shape): ``np.all(a == b, axis=1).sum()``."""
    B, N = a.shape
    count = 0
    for r in range(B):
        same = True
        for i in range(N):
            if a[r, i] != b[r, i]:
                same = False
                break
        if same:
            count += 1
    return count


@njit(cache=True)
def count_at_least(x: np.ndarray, cut: float) -> int:
    """How many float32 x_i >= cut, the cut rounded to float32 first: numpy's ``x >= cut`` for a
    float32 array and a Python float (NEP 50: the float is weak and takes the array's type)."""
    c = np.float32(cut)
    count = 0
    for v in x:
        if v >= c:
            count += 1
    return count
