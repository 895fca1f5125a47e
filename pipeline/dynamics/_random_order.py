"""A small, fast random generator for the sequential dynamics: random visiting orders and
uniform numbers inside numba kernels.

Why not numba's ``np.random``: its Mersenne Twister with rejection sampling cost ~10 ns per
site of a shuffle, as much as a whole GEMM's worth of time on a batch of 1000 states at
N = 1000 (benchmarks/RESULTS.md). SplitMix64 (Steele, Lea & Flood 2014; the seeding generator
of xoshiro) with Lemire's multiply-shift bounded integers (2019, exact: rejection removes the
bias) costs ~2 ns per site and passes BigCrush. One generator per state, seeded from an
integer the caller draws, so a state's trajectory does not depend on its place in the batch.
The state is a one-element uint64 array so that kernels can advance it in place.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SEED_HIGH = 2**32 - 1  # per-state seeds are drawn in [0, SEED_HIGH)

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO32 = np.uint64(1 << 32)
_U30 = np.uint64(30)
_U27 = np.uint64(27)
_U31 = np.uint64(31)
_U32 = np.uint64(32)
_U11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True)
def new_state(seed: int) -> np.ndarray:
    """A generator state for one trajectory (any integer seed)."""
    state = np.empty(1, np.uint64)
    state[0] = np.uint64(seed)
    next_u64(state)  # one step so that nearby seeds start far apart
    return state


@njit(cache=True)
def next_u64(state: np.ndarray) -> np.uint64:
    """SplitMix64: advance the state by the golden gamma and mix."""
    z = state[0] + _GAMMA
    state[0] = z
    z = (z ^ (z >> _U30)) * _MIX1
    z = (z ^ (z >> _U27)) * _MIX2
    return z ^ (z >> _U31)


@njit(cache=True)
def below(state: np.ndarray, n: int) -> int:
    """A uniform integer in [0, n), n < 2**32, without bias (Lemire's method)."""
    un = np.uint64(n)
    m = (next_u64(state) >> _U32) * un
    low = m & _LOW32
    if low < un:
        threshold = (_TWO32 - un) % un
        while low < threshold:
            m = (next_u64(state) >> _U32) * un
            low = m & _LOW32
    return np.int64(m >> _U32)


@njit(cache=True)
def uniform(state: np.ndarray) -> float:
    """A uniform float in [0, 1) with 53 random bits."""
    return np.float64(next_u64(state) >> _U11) * _INV53


@njit(cache=True)
def shuffle(order: np.ndarray, state: np.ndarray) -> None:
    """Fisher-Yates in place: every permutation of ``order`` equally likely."""
    for i in range(order.shape[0] - 1, 0, -1):
        j = below(state, i + 1)
        tmp = order[i]
        order[i] = order[j]
        order[j] = tmp
