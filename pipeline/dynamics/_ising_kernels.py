"""Numba kernels of sequential Ising dynamics with incrementally updated local fields.

Fields are computed once for the whole batch with one BLAS product, then kept up to date
on each flip (h += 2 s_i J[:, i], O(N)), so a sweep costs O(N + flips * N), not O(N^2).
Fields are accumulated in float64 so that thousands of incremental updates do not drift
away from the freshly computed J s (the sign of h decides every move).
Randomness: each state gets its own integer seed drawn from the caller's Generator, so a
state's trajectory does not depend on its position in the batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.model import Model, NotApplicable

SEED_HIGH = 2**32 - 1  # numba's np.random.seed takes a uint32
# A field is a tie (the spin is kept) when |h_i| <= TIE_RTOL * sum_j |J_ij|. Exact ties are
# common for Hebb couplings (h is a multiple of 1/N) but float32 J and GEMMs turn them into
# +-1e-7 * sum_j |J_ij| noise (measured at N = 500-2000), which would otherwise decide
# moves at random. 5e-6 leaves a 25x margin above that noise and stays below the smallest
# genuine Hebb field 4/N for any N whose N x N couplings fit in memory (N <~ 10^4).
TIE_RTOL = 5e-6


def tie_tolerance(J: np.ndarray) -> np.ndarray:
    """Per-site tie threshold on |h_i| (float64, shape (N,))."""
    return TIE_RTOL * np.abs(J).sum(axis=1, dtype=np.float64)


def ising_couplings(model: Model, dynamics: str) -> np.ndarray:
    """The float32 (N, N) couplings of an Ising model; NotApplicable if there are none."""
    if model.J is None:
        raise NotApplicable(f"{dynamics} dynamics needs couplings J; this model has none")
    J = np.asarray(model.J)
    if model.q != 2 or J.ndim != 2:
        raise NotApplicable(f"{dynamics} dynamics here is Ising-only (q=2), got q={model.q}")
    return J.astype(np.float32, copy=False)


def prepare(J: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Working copies: int8 states, float64 fields H = S J^T (float32 GEMM), contiguous J^T.

    J^T is made contiguous so the column J[:, i] needed after flipping spin i is a row.
    """
    S = np.array(states, dtype=np.int8, order="C", copy=True)
    if S.ndim != 2 or S.shape[1] != J.shape[0]:
        raise ValueError(f"states must be (B, {J.shape[0]}), got {S.shape}")
    H = (S.astype(np.float32) @ J.T).astype(np.float64)
    JT = np.ascontiguousarray(J.T)
    return S, H, JT


@njit(cache=True)
def _flip(s: np.ndarray, h: np.ndarray, JT: np.ndarray, i: int, new: int) -> None:
    """Set s_i = new (= -s_i) and update every field by 2 new J[:, i]."""
    s[i] = new
    row = JT[i]
    d = 2.0 * new
    for j in range(h.shape[0]):
        h[j] += d * row[j]


@njit(cache=True)
def _any_unstable(s: np.ndarray, h: np.ndarray, tol: np.ndarray) -> bool:
    """Whether some site would flip: s_i h_i < -tol_i (one branch-free vectorised pass)."""
    n = 0
    for i in range(s.shape[0]):
        n += s[i] * h[i] < -tol[i]
    return n > 0


@njit(cache=True)
def relax_zero_t(
    S: np.ndarray,
    H: np.ndarray,
    JT: np.ndarray,
    tol: np.ndarray,
    seeds: np.ndarray,
    max_sweeps: int,
    converged: np.ndarray,
    sweeps: np.ndarray,
) -> None:
    """Zero-temperature asynchronous dynamics for every state of the batch, in place.

    Each sweep visits the sites in a fresh random order; s_i <- sign(h_i), and a tie
    (|h_i| <= tol_i, see TIE_RTOL) keeps the spin. A sweep without a flip is a fixed point
    (converged); otherwise stop at max_sweeps (asymmetric couplings may cycle).
    Two shortcuts leave every trajectory bit-identical: a sweep that would find no unstable
    site is recognised by one linear pass before its shuffle is drawn (the state's generator
    is not used afterwards), and the move test s_i h_i < -tol_i is a single, rarely taken
    branch (the same decision as h_i > tol_i with s_i < 0, or h_i < -tol_i with s_i > 0).
    """
    B, N = S.shape
    order = np.empty(N, np.int64)
    for b in range(B):
        np.random.seed(seeds[b])
        for k in range(N):
            order[k] = k
        s = S[b]
        h = H[b]
        done = False
        n = 0
        while n < max_sweeps:
            n += 1
            if not _any_unstable(s, h, tol):
                done = True
                break
            np.random.shuffle(order)
            for k in range(N):
                i = order[k]
                si = s[i]
                if si * h[i] < -tol[i]:
                    _flip(s, h, JT, i, -si)
        converged[b] = done
        sweeps[b] = n


@njit(cache=True)
def relax_heat_bath(
    S: np.ndarray,
    H: np.ndarray,
    JT: np.ndarray,
    seeds: np.ndarray,
    n_sweeps: int,
    temperature: float,
    converged: np.ndarray,
) -> None:
    """Glauber (heat-bath) dynamics at temperature T, random sequential order, in place.

    s_i = +1 with probability 1 / (1 + exp(-2 h_i / T)); runs n_sweeps full sweeps and
    reports converged = no flip in the last sweep (at T -> 0: a zero-temperature fixed point).
    """
    B, N = S.shape
    order = np.empty(N, np.int64)
    beta2 = 2.0 / temperature
    for b in range(B):
        np.random.seed(seeds[b])
        for k in range(N):
            order[k] = k
        s = S[b]
        h = H[b]
        flips = 0
        for _ in range(n_sweeps):
            np.random.shuffle(order)
            flips = 0
            for k in range(N):
                i = order[k]
                x = -beta2 * h[i]
                # exp overflows to inf for strongly negative fields: p -> 0, as it should
                p_plus = 1.0 / (1.0 + np.exp(x)) if x < 700.0 else 0.0
                new = 1 if np.random.random() < p_plus else -1
                if new != s[i]:
                    _flip(s, h, JT, i, new)
                    flips += 1
        converged[b] = flips == 0
