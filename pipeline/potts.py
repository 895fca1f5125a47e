"""Potts-state helpers shared by the Potts rules, dynamics and metrics.

Potts states are int8 in 0..q-1. Couplings are float32 (N, q, N, q) with zero diagonal
blocks and local fields h_i(a) = sum_j J[i, a, j, s_j]. The one-hot layout used everywhere
is column i*q + a, so that a (N, q, N, q) tensor reshaped to (N q, N q) maps one-hot states
to fields with a single matrix product.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_states",
    "corrupt",
    "energy",
    "flat_couplings",
    "FLOOR_EPS",
    "is_fixed_point",
    "local_fields",
    "one_hot",
    "overlap",
]

# floor(rho N) computed in floating point: rho = 0.29, N = 100 gives 28.999999999999996.
# The nudge makes it 29 as intended, and is far below 1/N for any N we can store.
FLOOR_EPS = 1e-9


def check_states(X: np.ndarray, q: int) -> np.ndarray:
    """X as a (B, N) int8 array after checking every state lies in 0..q-1."""
    if q < 2:
        raise ValueError(f"Potts states need q >= 2, got q={q}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"states must be a (B, N) array, got shape {X.shape}")
    if X.size and (X.min() < 0 or X.max() >= q):
        raise ValueError(f"Potts states must lie in 0..{q - 1}, got range {X.min()}..{X.max()}")
    return X.astype(np.int8, copy=False)


def one_hot(X: np.ndarray, q: int, dtype: type = np.float32) -> np.ndarray:
    """(B, N) states -> (B, N*q) indicators, column i*q + a set where X[:, i] == a."""
    X = check_states(X, q)
    B, N = X.shape
    out = np.zeros((B, N * q), dtype=dtype)
    cols = np.arange(N, dtype=np.intp)[None, :] * q + X.astype(np.intp)
    np.put_along_axis(out, cols, 1, axis=1)
    return out


def overlap(a: np.ndarray, b: np.ndarray, q: int) -> np.ndarray:
    """Row-wise Potts overlap (q f - 1)/(q - 1), f = fraction of equal sites.

    1 for identical rows, 0 on average for independent uniform rows, -1/(q-1) when every site
    differs. a and b broadcast (e.g. (B, N) against (N,)).
    """
    f = np.mean(np.asarray(a) == np.asarray(b), axis=-1)
    return (q * f - 1.0) / (q - 1.0)


def corrupt(X: np.ndarray, rho: float, q: int, rng: np.random.Generator) -> np.ndarray:
    """Copy of X with exactly floor(rho N) sites per row set to a uniformly random other state.

    Exactly, not on average, so that every start has the same initial overlap
    1 - q/(q-1) floor(rho N)/N. Adding a uniform shift in 1..q-1 modulo q is a uniform draw
    among the q - 1 states different from the current one.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"noise rho must lie in [0, 1], got {rho}")
    X = check_states(X, q)
    B, N = X.shape
    k = int(np.floor(rho * N + FLOOR_EPS))
    out = X.copy()
    if k == 0 or B == 0:
        return out
    sites = np.argsort(rng.random((B, N)), axis=1)[:, :k]
    rows = np.arange(B)[:, None]
    shift = rng.integers(1, q, size=(B, k))
    out[rows, sites] = ((out[rows, sites].astype(np.int16) + shift) % q).astype(np.int8)
    return out


def flat_couplings(J: np.ndarray) -> np.ndarray:
    """(N, q, N, q) couplings viewed as the (N q, N q) matrix acting on one-hot states."""
    J = np.asarray(J)
    if J.ndim != 4 or J.shape[0] != J.shape[2] or J.shape[1] != J.shape[3]:
        raise ValueError(f"Potts couplings must have shape (N, q, N, q), got {J.shape}")
    N, q = J.shape[:2]
    return J.reshape(N * q, N * q)


def local_fields(J: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(B, N, q) float64 fields h_i(a) = sum_j J[i, a, j, s_j] (one matrix product, exact-ish)."""
    Jf = flat_couplings(J).astype(np.float64)
    N, q = J.shape[:2]
    H = one_hot(S, q, np.float64) @ Jf.T
    return H.reshape(-1, N, q)


def energy(J: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(B,) E = -1/2 sum_{i,j} J[i, s_i, j, s_j] in float64; a Lyapunov function when J is symmetric."""
    S = np.asarray(S)
    H = local_fields(J, S)
    own = np.take_along_axis(H, S.astype(np.intp)[:, :, None], axis=2)[:, :, 0]
    return -0.5 * own.sum(axis=1)


def is_fixed_point(J: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(B,) True where every site already holds a maximal field (ties keep the state)."""
    S = np.asarray(S)
    H = local_fields(J, S)
    own = np.take_along_axis(H, S.astype(np.intp)[:, :, None], axis=2)[:, :, 0]
    return np.all(own >= H.max(axis=2), axis=1)
