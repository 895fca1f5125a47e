"""Parallel tempering (replica exchange) for Ising models on sparse graphs, in numba.

R replicas at inverse temperatures beta_0 > ... > beta_{R-1} each get a Metropolis sweep
(sites in typewriter order), then neighbouring temperatures try to exchange configurations
with probability min(1, exp((beta_t - beta_{t+1}) (E_t - E_{t+1}))). Hot replicas cross the
barriers that trap a cold one, which is what makes 2D spin-glass samples at T ~ 1 reliable.
Exchanges swap slot labels, not configurations, so a swap costs O(1).

Randomness comes from a xoshiro256** generator seeded with one integer, kept inside the
kernel: the sampled chain is a pure function of (graph, couplings, temperatures, seed,
sweep counts), and sample k is the same whatever the number of samples asked for, so a
longer run's prefix can serve a shorter request.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U64 = np.uint64


@njit(cache=True)
def _rotl(x: np.uint64, k: int) -> np.uint64:
    return (x << _U64(k)) | (x >> _U64(64 - k))


@njit(cache=True)
def _seed_state(seed: np.uint64) -> np.ndarray:
    """xoshiro256** state from splitmix64, the seeding its authors recommend."""
    state = np.empty(4, dtype=np.uint64)
    z = _U64(seed)
    for k in range(4):
        z = z + _U64(0x9E3779B97F4A7C15)
        x = z
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        state[k] = x ^ (x >> _U64(31))
    return state


@njit(cache=True)
def _uniform(state: np.ndarray) -> float:
    """Next xoshiro256** output as a double in [0, 1)."""
    result = _rotl(state[1] * _U64(5), 7) * _U64(9)
    t = state[1] << _U64(17)
    state[2] ^= state[0]
    state[3] ^= state[1]
    state[1] ^= state[2]
    state[0] ^= state[3]
    state[2] ^= t
    state[3] = _rotl(state[3], 45)
    return float(result >> _U64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def energy(spins: np.ndarray, nbr: np.ndarray, Jn: np.ndarray) -> float:
    """H = -sum_bonds J_b s_i s_j; every bond appears once from each end of ``nbr``."""
    e = 0.0
    for i in range(nbr.shape[0]):
        h = 0.0
        for k in range(nbr.shape[1]):
            h += Jn[i, k] * spins[nbr[i, k]]
        e -= 0.5 * spins[i] * h
    return e


@njit(cache=True)
def _metropolis_sweep(spins: np.ndarray, nbr: np.ndarray, Jn: np.ndarray, beta: float, state: np.ndarray) -> float:
    """One Metropolis sweep in place; returns the energy change."""
    de_total = 0.0
    for i in range(nbr.shape[0]):
        h = 0.0
        for k in range(nbr.shape[1]):
            h += Jn[i, k] * spins[nbr[i, k]]
        de = 2.0 * spins[i] * h
        if de <= 0.0 or _uniform(state) < np.exp(-beta * de):
            spins[i] = -spins[i]
            de_total += de
    return de_total


@njit(cache=True)
def _pt_step(
    spins: np.ndarray,
    E: np.ndarray,
    slot: np.ndarray,
    nbr: np.ndarray,
    Jn: np.ndarray,
    betas: np.ndarray,
    state: np.ndarray,
    accepted: np.ndarray,
) -> None:
    """One PT step: a sweep of every replica, then one exchange attempt per neighbouring pair."""
    R = betas.shape[0]
    for t in range(R):
        r = slot[t]
        E[r] += _metropolis_sweep(spins[r], nbr, Jn, betas[t], state)
    for t in range(R - 1):
        a, b = slot[t], slot[t + 1]
        delta = (betas[t] - betas[t + 1]) * (E[a] - E[b])
        if delta >= 0.0 or _uniform(state) < np.exp(delta):
            slot[t], slot[t + 1] = b, a
            accepted[t] += 1


@njit(cache=True)
def _run(
    nbr: np.ndarray,
    Jn: np.ndarray,
    betas: np.ndarray,
    target: int,
    seed: np.uint64,
    n_equil: int,
    n_samples: int,
    n_between: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N = nbr.shape[0]
    R = betas.shape[0]
    state = _seed_state(seed)
    spins = np.empty((R, N), dtype=np.int8)
    E = np.empty(R)
    for r in range(R):  # independent random starts
        for i in range(N):
            spins[r, i] = 1 if _uniform(state) < 0.5 else -1
        E[r] = energy(spins[r], nbr, Jn)
    slot = np.arange(R)
    accepted = np.zeros(max(R - 1, 1), dtype=np.int64)
    for _ in range(n_equil):
        _pt_step(spins, E, slot, nbr, Jn, betas, state, accepted)
    accepted[:] = 0
    samples = np.empty((n_samples, N), dtype=np.int8)
    energies = np.empty(n_samples)
    for s in range(n_samples):
        for _ in range(n_between):
            _pt_step(spins, E, slot, nbr, Jn, betas, state, accepted)
        r = slot[target]
        samples[s] = spins[r]
        E[r] = energy(spins[r], nbr, Jn)  # exact value, no drift from accumulated updates
        energies[s] = E[r]
    return samples, energies, accepted


def sample(
    nbr: np.ndarray,
    Jn: np.ndarray,
    temperatures: np.ndarray,
    target: int,
    seed: int,
    n_equil: int,
    n_samples: int,
    n_between: int,
) -> dict[str, np.ndarray]:
    """Equilibrium configurations at ``temperatures[target]`` from a PT run.

    nbr (N, z) int32 neighbour table and Jn (N, z) float64 couplings to those neighbours
    (a bond listed at both ends). ``temperatures`` must be strictly increasing. Returns
    samples (n_samples, N) int8, their energies, and the swap acceptance rate of each
    neighbouring pair of temperatures during sampling (a ladder diagnostic: rates near 0
    mean the ladder is too sparse to mix).
    """
    temps = np.asarray(temperatures, dtype=np.float64)
    if temps.ndim != 1 or len(temps) == 0 or np.any(temps <= 0) or np.any(np.diff(temps) <= 0):
        raise ValueError(f"temperatures must be positive and strictly increasing, got {temps}")
    samples, energies, accepted = _run(
        np.ascontiguousarray(nbr, dtype=np.int32),
        np.ascontiguousarray(Jn, dtype=np.float64),
        1.0 / temps,
        int(target),
        np.uint64(seed),
        int(n_equil),
        int(n_samples),
        int(n_between),
    )
    steps = max(n_samples * n_between, 1)
    return {"samples": samples, "energies": energies, "swap_rate": accepted[: len(temps) - 1] / steps}
