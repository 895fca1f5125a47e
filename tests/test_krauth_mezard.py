"""Krauth-Mezard / Minover against Gardner's capacity, and the Gardner formulas themselves."""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.pipeline.rules import krauth_mezard
from amsweep.pipeline.theory.gardner import alpha_c, alpha_c_quad, gardner_integral, kappa_max

N = 200


def patterns(P: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random((P, n)) < 0.5, 1, -1).astype(np.int8)


def stabilities(J: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Gardner's Delta_i^mu = xi_i^mu h_i^mu / |J_i| (P, N), recomputed in float64."""
    J = J.astype(np.float64)
    H = X.astype(np.float64) @ J.T
    return H * X / np.linalg.norm(J, axis=1)


def train(X: np.ndarray, **params) -> krauth_mezard.Model:
    full = {k: p.default for k, p in krauth_mezard.PARAMS.items()} | params
    return krauth_mezard.train(X, 2, full, np.random.default_rng(0))


def test_gardner_alpha_c_at_zero_margin_is_two() -> None:
    assert alpha_c(0.0) == 2.0  # I(0) = Phi(0) = 1/2 exactly in the closed form
    assert alpha_c_quad(0.0) == pytest.approx(2.0, abs=1e-10)
    assert kappa_max(2.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kappa", [0.1, 0.5, 1.0, 2.0, 4.0])
def test_gardner_closed_form_equals_quadrature(kappa: float) -> None:
    # two independent evaluations of the same integral; quad is asked for 1e-12 relative
    assert alpha_c(kappa) == pytest.approx(alpha_c_quad(kappa), rel=1e-10)
    assert kappa_max(alpha_c(kappa)) == pytest.approx(kappa, abs=1e-10)


def test_gardner_decreases_with_margin_to_its_asymptote() -> None:
    ks = np.linspace(0.0, 6.0, 121)
    a = np.array([alpha_c(k) for k in ks])
    assert np.all(np.diff(a) < 0)
    # I(kappa) -> 1 + kappa^2 for large kappa (the Gaussian tail is below 1e-9 at 6)
    assert gardner_integral(6.0) == pytest.approx(37.0, rel=1e-8)


@pytest.mark.parametrize("kappa", [0.5, 1.0])
def test_margin_reached_below_alpha_c_and_impossible_above(kappa: float) -> None:
    """0.6 alpha_c: kappa_max(0.6 alpha_c) is 0.92 (kappa = 0.5) and 1.6 (kappa = 1), far
    above kappa compared with the row-to-row spread of kappa_max at N = 200 (~N^-1/2 ~ 0.07):
    every one of the 200 rows must converge. 1.6 alpha_c: kappa_max is 0.17 and 0.62, far
    below kappa, so no row may converge; Minover certifies it (the norm of a point of the
    convex hull of the patterns bounds kappa_max from above)."""
    below = patterns(round(0.6 * alpha_c(kappa) * N), N, seed=1)
    m = train(below, kappa=kappa)
    assert m.info["converged"] and m.info["rows_converged"] == 1.0
    # float32 couplings: stabilities recomputed in float64 may differ by ~1e-6
    assert stabilities(m.J, below).min() >= kappa - 1e-5
    assert m.info["min_stability"] >= kappa
    above = patterns(round(1.6 * alpha_c(kappa) * N), N, seed=2)
    m = train(above, kappa=kappa)
    assert not m.info["converged"] and m.info["rows_converged"] == 0.0
    assert m.info["min_stability"] < kappa
    assert stabilities(m.J, above).min(axis=0).max() < kappa  # not one row made it


def test_zero_margin_perceptron_below_two() -> None:
    # alpha = 1.2 = 0.6 alpha_c(0): all rows separable (Cover: P(separable) -> 1 below 2)
    X = patterns(240, N, seed=3)
    m = train(X, kappa=0.0)
    assert m.info["converged"] and (stabilities(m.J, X) > 0).all()


def test_max_stability_reaches_gardner_kappa_max() -> None:
    """Minover to a 1% duality gap at alpha = 0.5: each row's optimal stability is within
    1% of its certified bounds; their median over 200 rows estimates kappa_max(0.5) = 1.034
    up to finite-N corrections (measured 1.032-1.042 at N = 200)."""
    X = patterns(100, N, seed=4)
    m = train(X, mode="max_stability", tol=0.01)
    assert m.info["converged"]
    lo, hi = m.info["kappa_max_bounds"]
    assert lo <= hi <= lo / 0.99 + 1e-12
    row_min = stabilities(m.J, X).min(axis=0)
    assert abs(np.median(row_min) - kappa_max(0.5)) < 0.05
