"""TAP / AMP retrieval against replica-symmetric theory, heat-bath Monte Carlo and belief propagation."""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.pipeline.dynamics import _mp_bp, _mp_mc, tap
from amsweep.pipeline.model import Model, NotApplicable
from amsweep.pipeline.theory import hopfield_rs as rs
from tests.physics import corrupt as _noisy

ALPHA = 0.05
N_LARGE = 2000  # P = 100 patterns: sample-to-sample spread of one pattern's overlap ~0.3 / sqrt(N)


def _hebb_model(N: int, alpha: float, seed: int) -> Model:
    """What the hebb rule returns for random patterns (its J is not used by TAP)."""
    rng = np.random.default_rng(seed)
    X = np.where(rng.random((int(alpha * N), N)) < 0.5, 1, -1).astype(np.int8)
    J = X.T.astype(np.float32) @ X.astype(np.float32) / N
    np.fill_diagonal(J, 0.0)
    return Model(q=2, J=J, memories=X.astype(np.float32), params={})


def _params(T: float, max_sweeps: int = 300, tol: float = 1e-8) -> dict:
    return {"beta": 1.0 / T, "damping": 0.0, "max_sweeps": max_sweeps, "tol": tol}


@pytest.fixture(scope="module")
def large() -> Model:
    return _hebb_model(N_LARGE, ALPHA, seed=11)


@pytest.mark.parametrize("T", [0.3, 0.4])
def test_tap_overlap_matches_replica_symmetric_theory(large, T):
    # Mean over 20 patterns: the per-pattern spread at N = 2000 is 0.001 (T = 0.3) and 0.003
    # (T = 0.4), so the mean has sd < 0.001; the finite-N bias of TAP overlaps was +0.0001/+0.0003
    # here and up to +0.005 closer to T_M on other samples. 0.01 is still < m(0.3) - m(0.4) = 0.025.
    X = large.memories.astype(np.int8)
    cues = _noisy(X[:20], 0.1, np.random.default_rng(1))
    res = tap.run(large, cues, _params(T), np.random.default_rng(0))
    assert res.converged.all()
    overlaps = np.einsum("bn,bn->b", res.m, X[:20]) / N_LARGE
    assert abs(overlaps.mean() - rs.overlap(ALPHA, T)) < 0.01


@pytest.mark.parametrize("T", [0.4, 0.5])
def test_tap_fixed_point_matches_heat_bath_time_average(large, T):
    # Same sample, same pattern: both estimate the thermal overlap. The MC time average over
    # 600 sweeps has sd ~ sqrt((1 - q) / N * tau / 600) < 1e-3 (tau ~ 2 sweeps); TAP differs from the
    # exact finite-N average by O(1/N) per site. Observed differences were <= 0.004 at T = 0.5.
    X = large.memories.astype(np.int8)
    rng = np.random.default_rng(7)
    m_tap = tap.polarizations(large, X[:3], _params(T), rng)
    for k in range(3):
        m_mc = _mp_mc.time_averaged_spins(large.memories, X[k], 1.0 / T, n_burn=100, n_sweeps=600, rng=rng)
        assert abs(m_mc @ X[k] - m_tap[k] @ X[k]) / N_LARGE < 0.01


def test_tap_retrieves_below_and_fails_above_T_M(large):
    # T_M(0.05) = 0.542. At T = 0.4 every cue with 10% noise is retrieved (sign overlap 1 up to
    # the ~1% of sites that are thermally misaligned). At T_M + 0.1 no retrieval state exists: the
    # iteration does not converge and wanders among spin-glass-like states that keep only a residual
    # correlation with the cue (mean 0.10, largest 0.22 here), far below the 0.85 that the
    # retrieval state still has just below T_M.
    X = large.memories.astype(np.int8)
    cues = _noisy(X[:20], 0.1, np.random.default_rng(2))
    below = tap.relax(large, cues, _params(0.4, max_sweeps=100, tol=1e-6), np.random.default_rng(0))
    assert (np.einsum("bn,bn->b", below.final.astype(np.int32), X[:20]) / N_LARGE >= 0.99).all()
    T_hot = rs.T_M(ALPHA) + 0.1
    m_hot = tap.polarizations(large, cues, _params(T_hot, max_sweeps=100, tol=1e-6), np.random.default_rng(0))
    overlaps = np.abs(np.einsum("bn,bn->b", m_hot, X[:20])) / N_LARGE
    assert overlaps.max() < 0.4
    assert overlaps.mean() < 0.2


def test_tap_at_low_temperature_and_with_damping():
    # At beta = 20 the cue's own variances (1 - 0.95^2) would give beta (1 - q) > 1; AMP must
    # still land on the RS state, m(0.1, T = 0.05) = 0.998 (per-pattern spread ~1e-3 at N = 1000).
    # Damping mixes old and new iterates and may not move the fixed point (tol 1e-9 on m).
    model = _hebb_model(1000, 0.1, seed=5)
    X = model.memories.astype(np.int8)
    cues = _noisy(X[:10], 0.1, np.random.default_rng(3))
    cold = tap.run(model, cues, _params(0.05, max_sweeps=200, tol=1e-9), None)
    assert cold.converged.all()
    overlaps = np.einsum("bn,bn->b", cold.m, X[:10]) / 1000
    assert abs(overlaps.mean() - rs.overlap(0.1, 0.05)) < 0.003
    plain = tap.run(model, cues, _params(0.2, max_sweeps=300, tol=1e-10), None)
    damped = tap.run(model, cues, {**_params(0.2, max_sweeps=600, tol=1e-10), "damping": 0.6}, None)
    assert plain.converged.all() and damped.converged.all()
    assert np.abs(plain.m - damped.m).max() < 1e-7
    assert (damped.sweeps > plain.sweeps).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tap_is_the_large_N_limit_of_belief_propagation(seed):
    # BP on the dense graph at N = 400 differs from TAP by the O(J^3) terms TAP drops: per-site
    # rms differences of 2e-4 to 6e-4 were seen, 5-10x below naive mean field (no Onsager term),
    # whose reaction error is O(alpha beta (1 - q)) per site.
    N, T = 400, 0.4
    model = _hebb_model(N, ALPHA, seed)
    X = model.memories.astype(np.int8)
    m_tap = tap.polarizations(model, X[:1], _params(T, max_sweeps=500, tol=1e-12), np.random.default_rng(0))[0]
    J = model.J.astype(np.float64)
    bp = _mp_bp.magnetizations(J, 1.0 / T, X[0].astype(np.float64))
    assert bp.converged
    m_nmf = 0.95 * X[0].astype(np.float64)
    for _ in range(300):
        m_nmf = np.tanh(J @ m_nmf / T)
    rms_tap = np.sqrt(np.mean((m_tap - bp.m) ** 2))
    rms_nmf = np.sqrt(np.mean((m_nmf - bp.m) ** 2))
    assert rms_tap < 0.002
    assert rms_tap < 0.35 * rms_nmf


def test_relax_contract_and_batch_independence():
    # Converged cues stop updating, so a cue's result cannot depend on the batch it is in.
    model = _hebb_model(300, 0.05, seed=3)
    X = model.memories.astype(np.int8)
    cues = _noisy(X[:6], 0.2, np.random.default_rng(4))
    params = _params(0.4, max_sweeps=100, tol=1e-6)
    rng = np.random.default_rng(0)
    batch = tap.relax(model, cues, params, rng)
    assert batch.final.dtype == np.int8 and set(np.unique(batch.final)) <= {-1, 1}
    assert batch.sweeps.dtype == np.int32 and (batch.sweeps[batch.converged] < 100).all()
    for b in range(6):
        one = tap.relax(model, cues[b : b + 1], params, rng)
        np.testing.assert_array_equal(one.final[0], batch.final[b])
        assert one.sweeps[0] == batch.sweeps[b]


def test_not_applicable_without_binary_patterns():
    with pytest.raises(NotApplicable):
        tap.relax(Model(q=2, J=np.zeros((4, 4), np.float32)), np.ones((1, 4), np.int8), _params(0.5), None)
    soft = Model(q=2, memories=np.full((2, 4), 0.5, np.float32))
    with pytest.raises(NotApplicable):
        tap.relax(soft, np.ones((1, 4), np.int8), _params(0.5), None)
