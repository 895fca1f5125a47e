"""Numba kernels of sequential Ising dynamics with incrementally updated local fields.

Fields are computed once for the whole batch with one BLAS product, then kept up to date
on each flip (h += 2 s_i J[:, i], O(N)), so a sweep costs O(N + flips * N), not O(N^2).
Fields are float32 like J: a flip's update is then one 8-wide vector pass over 4 N bytes of
J^T and 4 N bytes of h. Each update rounds h by at most half an ulp of |h| <= sum_j |J_ij|,
i.e. <= 3e-8 sum_j |J_ij|; a state's fields are recomputed exactly (float64 sums) after every
N flips, so the accumulated error stays below sqrt(N) * 3e-8 ~ 1e-6 of sum_j |J_ij| (N = 1000)
even in the worst case of |h| at its bound, under the tie tolerance below (5e-6). Only
states that flip more than N spins (cycles of asymmetric couplings, T > 0) pay the refresh.
Randomness: each state gets its own integer seed drawn from the caller's Generator and its
own generator (``_random_order``), so a state's trajectory does not depend on its position in
the batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from amsweep.pipeline.dynamics._random_order import SEED_HIGH, new_state, shuffle, uniform
from amsweep.pipeline.model import Model, NotApplicable

__all__ = [
    "SEED_HIGH",
    "TIE_RTOL",
    "heat_bath_averaged",
    "ising_couplings",
    "prepare",
    "relax_heat_bath",
    "relax_zero_t",
    "relax_zero_t_budgets",
    "tie_tolerance",
]

# A field is a tie (the spin is kept) when |h_i| <= TIE_RTOL * sum_j |J_ij|. Exact ties are
# common for Hebb couplings (h is a multiple of 1/N) but float32 J and GEMMs turn them into
# +-1e-7 * sum_j |J_ij| noise (measured at N = 500-2000), which would otherwise decide
# moves at random. 5e-6 leaves a 25x margin above that noise and stays below the smallest
# genuine Hebb field 4/N for any N whose N x N couplings fit in memory (N <~ 10^4).
TIE_RTOL = 5e-6


def tie_tolerance(J: np.ndarray) -> np.ndarray:
    """Per-site tie threshold on |h_i| (float32, shape (N,), like the fields)."""
    return (TIE_RTOL * np.abs(J).sum(axis=1, dtype=np.float64)).astype(np.float32)


def ising_couplings(model: Model, dynamics: str) -> np.ndarray:
    """The float32 (N, N) couplings of an Ising model; NotApplicable if there are none."""
    if model.J is None:
        raise NotApplicable(f"{dynamics} dynamics needs couplings J; this model has none")
    J = np.asarray(model.J)
    if model.q != 2 or J.ndim != 2:
        raise NotApplicable(f"{dynamics} dynamics here is Ising-only (q=2), got q={model.q}")
    return J.astype(np.float32, copy=False)


def prepare(J: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Working copies: int8 states, float32 fields H = S J^T (one GEMM), contiguous J^T.

    J^T is made contiguous so the column J[:, i] needed after flipping spin i is a row.
    """
    S = np.array(states, dtype=np.int8, order="C", copy=True)
    if S.ndim != 2 or S.shape[1] != J.shape[0]:
        raise ValueError(f"states must be (B, {J.shape[0]}), got {S.shape}")
    JT = np.ascontiguousarray(J.T)
    H = S.astype(np.float32) @ J.T
    return S, H, JT


@njit(cache=True)
def _flip(s: np.ndarray, h: np.ndarray, JT: np.ndarray, i: int, new: int) -> None:
    """Set s_i = new (= -s_i) and update every field by 2 new J[:, i] (float32 throughout)."""
    s[i] = new
    row = JT[i]
    d = np.float32(2 * new)
    for j in range(h.shape[0]):
        h[j] += d * row[j]


@njit(cache=True)
def _refresh(s: np.ndarray, h: np.ndarray, JT: np.ndarray, acc: np.ndarray) -> None:
    """Recompute h = J s exactly (float64 sums of the rows of J^T), dropping rounding drift."""
    acc[:] = 0.0
    for j in range(s.shape[0]):
        row = JT[j]
        sj = np.float64(s[j])
        for i in range(acc.shape[0]):
            acc[i] += sj * row[i]
    for i in range(h.shape[0]):
        h[i] = np.float32(acc[i])


@njit(cache=True)
def _any_unstable(s: np.ndarray, h: np.ndarray, tol: np.ndarray) -> bool:
    """Whether some site would flip: s_i h_i < -tol_i (one branch-free vectorised pass)."""
    n = 0
    for i in range(s.shape[0]):
        n += s[i] * h[i] < -tol[i]
    return n > 0


@njit(cache=True)
def _relax_state(
    s: np.ndarray,
    h: np.ndarray,
    JT: np.ndarray,
    tol: np.ndarray,
    seed: int,
    max_sweeps: int,
    order: np.ndarray,
    acc: np.ndarray,
) -> tuple[bool, int]:
    """One state of ``relax_zero_t`` in place: (converged, sweeps used). ``order`` and ``acc`` are
    scratch (the order is reset here), so a state's trajectory depends on its seed alone."""
    N = s.shape[0]
    rng = new_state(seed)
    for k in range(N):
        order[k] = k
    done = False
    n = 0
    flips = 0
    while n < max_sweeps:
        n += 1
        if not _any_unstable(s, h, tol):
            done = True
            break
        shuffle(order, rng)
        for k in range(N):
            i = order[k]
            si = s[i]
            if si * h[i] < -tol[i]:
                _flip(s, h, JT, i, -si)
                flips += 1
                if flips == N:
                    _refresh(s, h, JT, acc)
                    flips = 0
    return done, n


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
    order = np.empty(N, np.int32)
    acc = np.empty(N, np.float64)
    for b in range(B):
        converged[b], sweeps[b] = _relax_state(S[b], H[b], JT, tol, seeds[b], max_sweeps, order, acc)


@njit(cache=True)
def relax_zero_t_budgets(
    S: np.ndarray,
    H: np.ndarray,
    JT: np.ndarray,
    tol: np.ndarray,
    seeds: np.ndarray,
    budgets: np.ndarray,
    converged: np.ndarray,
    sweeps: np.ndarray,
) -> None:
    """``relax_zero_t`` with a sweep budget per state: batches of different budgets (the cell's
    one-sweep fixed-point check beside its retrievals) relaxed in one call, each state exactly
    as ``relax_zero_t`` relaxes it with its own budget."""
    B, N = S.shape
    order = np.empty(N, np.int32)
    acc = np.empty(N, np.float64)
    for b in range(B):
        converged[b], sweeps[b] = _relax_state(S[b], H[b], JT, tol, seeds[b], budgets[b], order, acc)


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
    heat_bath_averaged(S, H, JT, seeds, n_sweeps, temperature, converged, 0, np.zeros((0, 0)))


@njit(cache=True)
def heat_bath_averaged(
    S: np.ndarray,
    H: np.ndarray,
    JT: np.ndarray,
    seeds: np.ndarray,
    n_sweeps: int,
    temperature: float,
    converged: np.ndarray,
    n_average: int,
    total: np.ndarray,
) -> None:
    """``relax_heat_bath`` that also adds the state after each of the last n_average sweeps to ``total``.

    ``total`` (B, N) float64, zeroed by the caller; total / n_average is the time average <s_i>
    that estimates the thermal magnetisations. Accumulating reads the state only, so the
    trajectory (and ``S`` at the end) is the same for every n_average.
    """
    B, N = S.shape
    order = np.empty(N, np.int32)
    acc = np.empty(N, np.float64)
    beta2 = 2.0 / temperature
    first_averaged = n_sweeps - n_average
    for b in range(B):
        rng = new_state(seeds[b])
        for k in range(N):
            order[k] = k
        s = S[b]
        h = H[b]
        flips = 0
        since_refresh = 0
        for sweep in range(n_sweeps):
            shuffle(order, rng)
            flips = 0
            for k in range(N):
                i = order[k]
                x = -beta2 * h[i]
                # exp overflows to inf for strongly negative fields: p -> 0, as it should
                p_plus = 1.0 / (1.0 + np.exp(x)) if x < 700.0 else 0.0
                new = 1 if uniform(rng) < p_plus else -1
                if new != s[i]:
                    _flip(s, h, JT, i, new)
                    flips += 1
                    since_refresh += 1
                    if since_refresh == N:
                        _refresh(s, h, JT, acc)
                        since_refresh = 0
            if n_average > 0 and sweep >= first_averaged:
                row = total[b]
                for i in range(N):
                    row[i] += s[i]
        converged[b] = flips == 0
