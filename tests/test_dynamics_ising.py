"""Ising retrieval dynamics: fixed points, agreement between dynamics, T -> 0 and finite T."""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.pipeline.dynamics import asynchronous, glauber, synchronous
from amsweep.pipeline.dynamics._ising_kernels import tie_tolerance
from amsweep.pipeline.model import Model, NotApplicable
from amsweep.pipeline.rules import hebb, plm, pseudo_inverse
from tests.physics import patterns, corrupt

PLM = {k: p.default for k, p in plm.PARAMS.items()}


def is_fixed(J: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Per state: no site has a field of the opposite sign beyond the tie tolerance, with
    fields computed afresh in float64 (independent of the kernels' incremental fields)."""
    H = S.astype(np.float64) @ J.astype(np.float64).T
    return ~np.any(H * S < -tie_tolerance(J), axis=1)


def test_asynchronous_reaches_true_fixed_points_and_retrieves() -> None:
    # Hebb at alpha = 0.02 (N = 500): far below 0.138, retrieval from rho = 0.2 is exact
    # up to the O(exp(-1/(2 alpha))) ~ 1e-11 fraction of unstable sites.
    X = patterns(10, 500, seed=0)
    m = hebb.train(X, 2, {}, np.random.default_rng(0))
    r = asynchronous.relax(m, corrupt(X, 0.2, np.random.default_rng(1)), {"max_sweeps": 100}, np.random.default_rng(2))
    assert r.final.dtype == np.int8 and r.sweeps.dtype == np.int32
    assert np.array_equal(r.final, X) and r.converged.all()
    # Random starts: symmetric J, so the energy descent always ends at a fixed point,
    # and the incremental float32 fields must agree with a fresh J s.
    S = patterns(200, 500, seed=3)
    r = asynchronous.relax(m, S, {"max_sweeps": 100}, np.random.default_rng(4))
    assert r.converged.all() and is_fixed(m.J, r.final).all()
    assert np.all(r.sweeps >= 2)  # at least one flipping sweep and the confirming one


def test_asynchronous_is_deterministic_and_budgeted() -> None:
    X = patterns(30, 200, seed=5)
    m = plm.train(X, 2, PLM, np.random.default_rng(0))
    S = corrupt(np.concatenate([X] * 3), 0.4, np.random.default_rng(1))
    a = asynchronous.relax(m, S, {"max_sweeps": 100}, np.random.default_rng(7))
    b = asynchronous.relax(m, S, {"max_sweeps": 100}, np.random.default_rng(7))
    assert np.array_equal(a.final, b.final) and np.array_equal(a.sweeps, b.sweeps)
    one = asynchronous.relax(m, S, {"max_sweeps": 1}, np.random.default_rng(7))
    assert np.all(one.sweeps == 1)
    # one sweep from rho = 0.4 must flip spins, so it cannot also confirm a fixed point
    assert not one.converged.any()
    assert is_fixed(m.J, a.final[a.converged]).all()


def test_projector_patterns_unchanged_by_both_zero_t_dynamics() -> None:
    # h_i = (1 - Pi_ii) xi_i with Pi the projector (Pi_ii ~ alpha = 0.3 < 1): every stored
    # pattern is a strict fixed point, one sweep/step confirms it.
    X = patterns(60, 200, seed=8)
    m = pseudo_inverse.train(X, 2, {}, np.random.default_rng(0))
    for dyn in (asynchronous, synchronous):
        r = dyn.relax(m, X, {"max_sweeps": 5}, np.random.default_rng(1))
        assert np.array_equal(r.final, X) and r.converged.all() and np.all(r.sweeps == 1)


@pytest.mark.parametrize("rule", ["hebb", "plm"])
def test_asynchronous_and_synchronous_agree_on_fixed_points(rule: str) -> None:
    """A fixed point of one zero-T dynamics is a fixed point of the other (same map sign(Js))."""
    N = 200
    X = patterns(40, N, seed=9)
    m = (
        hebb.train(X, 2, {}, np.random.default_rng(0))
        if rule == "hebb"
        else plm.train(X, 2, PLM, np.random.default_rng(0))
    )
    starts = np.concatenate([corrupt(X, 0.3, np.random.default_rng(1)), patterns(100, N, seed=10)])
    a = asynchronous.relax(m, starts, {"max_sweeps": 100}, np.random.default_rng(2))
    s = synchronous.relax(m, starts, {"max_sweeps": 100}, np.random.default_rng(3))
    # most states must converge for the check to say something (Hebb: all, symmetric J)
    assert a.converged.mean() > 0.8 and s.converged.mean() > 0.5
    fa, fs = a.final[a.converged], s.final[s.converged]
    sa = synchronous.relax(m, fa, {"max_sweeps": 3}, np.random.default_rng(4))
    assert np.array_equal(sa.final, fa) and sa.converged.all() and np.all(sa.sweeps == 1)
    As = asynchronous.relax(m, fs, {"max_sweeps": 3}, np.random.default_rng(5))
    assert np.array_equal(As.final, fs) and As.converged.all() and np.all(As.sweeps == 1)


def test_synchronous_detects_two_cycles() -> None:
    # J = -(1 - I) (antiferromagnet on the complete graph): from the all-up state every
    # field is -(N-1), so parallel updates flip everything, forever: a 2-cycle.
    N = 8
    J = -(np.ones((N, N), np.float32) - np.eye(N, dtype=np.float32))
    r = synchronous.relax(Model(q=2, J=J), np.ones((1, N), np.int8), {"max_sweeps": 50}, np.random.default_rng(0))
    assert not r.converged[0] and r.sweeps[0] == 2


def test_glauber_zero_temperature_limit_matches_asynchronous() -> None:
    """At T = 1e-3 a move against a field |h| >= 1e-2 has probability < exp(-20): same
    attractors as the zero-T dynamics. From rho = 0.2 at alpha = 0.1 (inside the basins of
    both rules) the final states must coincide; from random starts the mean overlap with
    the zero-T end states is only statistical (different visiting orders)."""
    X = patterns(30, 300, seed=11)
    m = plm.train(X, 2, PLM, np.random.default_rng(0))
    starts = corrupt(X, 0.2, np.random.default_rng(1))
    g = glauber.relax(m, starts, {"max_sweeps": 20, "temperature": 1e-3}, np.random.default_rng(2))
    a = asynchronous.relax(m, starts, {"max_sweeps": 100}, np.random.default_rng(3))
    assert np.array_equal(g.final, a.final) and g.converged.all()
    assert np.all(g.sweeps == 20)


def test_glauber_finite_temperature_mattis_overlap() -> None:
    """Hebb with P = 2 at N = 1000 (alpha -> 0): the retrieval overlap solves m = tanh(m/T).

    T = 0.5 gives m* = 0.9575. Per state the thermal overlap fluctuates by
    sqrt((1 - m^2) / (N (1 - (1 - m^2)/T))) ~ 0.01; averaged over 40 states and read after
    30 sweeps (equilibration time ~ a few sweeps at T = T_c/2), the mean is within 0.01.
    """
    X = patterns(2, 1000, seed=12)
    m = hebb.train(X, 2, {}, np.random.default_rng(0))
    starts = np.repeat(X[:1], 40, axis=0)
    # the thermal overlap is that of the magnetisation, time-averaged over the last 20 of 30 sweeps
    # (``final`` is its sign, whose overlap is ~1); averaging only shrinks the per-state spread
    r = glauber.relax(m, starts, {"max_sweeps": 30, "temperature": 0.5, "average_sweeps": 20}, np.random.default_rng(1))
    overlap = (r.magnetisation @ X[0].astype(np.float64)) / 1000
    ms = 1.0
    for _ in range(200):
        ms = np.tanh(ms / 0.5)
    assert abs(overlap.mean() - ms) < 0.01, (overlap.mean(), ms)
    assert not r.converged.all()  # at T = 0.5 spins keep flipping


def test_coupling_less_models_are_not_applicable() -> None:
    m = Model(q=2, J=None, memories=np.ones((2, 10), np.float32))
    for dyn in (asynchronous, synchronous):
        with pytest.raises(NotApplicable):
            dyn.relax(m, np.ones((1, 10), np.int8), {"max_sweeps": 10}, np.random.default_rng(0))
    with pytest.raises(NotApplicable):
        glauber.relax(m, np.ones((1, 10), np.int8), {"max_sweeps": 10, "temperature": 1.0}, np.random.default_rng(0))
