"""The dynamics' random generator: SplitMix64 output, unbiased integers and permutations,
and the float32 incremental fields it drives staying within the tie tolerance."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats

from amsweep.pipeline.dynamics._ising_kernels import TIE_RTOL, prepare, relax_heat_bath, tie_tolerance
from amsweep.pipeline.dynamics._random_order import below, new_state, next_u64, shuffle, uniform
from amsweep.pipeline.rules import plm
from tests.physics import patterns

P_REJECT = 1e-6  # chi-square tests: a correct generator fails one in a million runs


def test_splitmix64_matches_the_reference_sequence() -> None:
    # Steele, Lea & Flood's SplitMix64 from state 1234567: first output 6457827717110365317.
    state = np.array([1234567], dtype=np.uint64)
    assert int(next_u64(state)) == 6457827717110365317
    # and a straight Python transcription for the next outputs
    mask, z_state = (1 << 64) - 1, 1234567 + 0x9E3779B97F4A7C15
    for _ in range(100):
        z_state = (z_state + 0x9E3779B97F4A7C15) & mask
        z = ((z_state ^ (z_state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        assert int(next_u64(state)) == z ^ (z >> 31)


def test_bounded_integers_and_uniforms_are_uniform() -> None:
    state = new_state(11)
    for n in (2, 7, 1000, 2**31 + 5):  # 2**31 + 5: rejection removes a bias of n / 2**32 ~ 50%
        bins = min(n, 10)
        draws = np.array([below(state, n) for _ in range(50_000)])
        assert draws.min() >= 0 and draws.max() < n
        counts = np.bincount(draws * bins // n, minlength=bins)
        expected = np.diff(np.ceil(np.arange(bins + 1) * n / bins)) / n * draws.size
        assert stats.chisquare(counts, expected).pvalue > P_REJECT, (n, counts)
    u = np.array([uniform(state) for _ in range(50_000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > P_REJECT


def test_every_permutation_equally_likely_and_seeds_independent() -> None:
    order = np.arange(5, dtype=np.int32)
    state = new_state(3)
    index = {p: k for k, p in enumerate(itertools.permutations(range(5)))}
    counts = np.zeros(len(index))
    for _ in range(60_000):
        shuffle(order, state)
        counts[index[tuple(order)]] += 1
    assert stats.chisquare(counts).pvalue > P_REJECT
    # neighbouring seeds give unrelated streams (first draws agree by chance only: 1/1000 each)
    firsts = [below(new_state(seed), 1000) for seed in range(2000)]
    assert np.mean(np.diff(firsts) == 0) < 0.005


def test_float32_fields_stay_within_the_tie_tolerance_after_many_flips() -> None:
    # Glauber at high T flips ~half the spins per sweep: 200 sweeps x N/2 ~ 10^5 flips per
    # state, far past the refresh period (N flips). The kernel's fields must still equal a
    # fresh float64 J s to well under the tie tolerance (the documented bound is ~TIE_RTOL / 5).
    N = 400
    X = patterns(40, N, seed=1)
    J = plm.train(X, 2, {k: p.default for k, p in plm.PARAMS.items()}, np.random.default_rng(0)).J
    S, H, JT = prepare(J, patterns(8, N, seed=2))
    seeds = np.arange(8, dtype=np.int64)
    converged = np.zeros(8, dtype=np.bool_)
    relax_heat_bath(S, H, JT, seeds, 200, 5.0, converged)
    exact = S.astype(np.float64) @ J.astype(np.float64).T
    drift = np.abs(H - exact) / (tie_tolerance(J).astype(np.float64) / TIE_RTOL)
    assert drift.max() < TIE_RTOL / 5, drift.max()
