"""Replica-symmetric Hopfield theory against its known answers (Amit-Gutfreund-Sompolinsky 1987)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from amsweep.pipeline.theory import hopfield_rs as rs


def _gauss_moments(m: float, sigma: float, beta: float) -> tuple[float, float]:
    """E tanh and E tanh^2 of beta (m + sigma z) by adaptive quadrature, independent of the solver's grid."""
    phi = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # noqa: E731
    kink = [-m / sigma] if sigma > 0 and abs(m / sigma) < 10 else None
    t1 = quad(lambda z: phi(z) * np.tanh(beta * (m + sigma * z)), -12, 12, points=kink, limit=400, epsabs=1e-13)[0]
    t2 = quad(lambda z: phi(z) * np.tanh(beta * (m + sigma * z)) ** 2, -12, 12, points=kink, limit=400, epsabs=1e-13)[0]
    return t1, t2


def test_capacity_at_zero_temperature():
    # AGS: alpha_c(0) = 0.138 with the retrieval overlap jumping from m_c = 0.967 to 0.
    a_c = rs.alpha_c(0.0)
    assert abs(a_c - 0.138) < 0.001
    assert abs(rs.solve(a_c * (1 - 1e-9), 0.0).m - 0.967) < 0.002
    assert rs.solve(a_c * 1.001, 0.0).m == 0.0


def test_finite_temperature_numerics_reach_the_zero_temperature_closed_form():
    # The finite-T branch is computed by quadrature, the T = 0 one by the erf closed form. Their
    # difference is a Sommerfeld-like O(T^2) correction: ~1e-6 at T = 0.005 for alpha = 0.1.
    assert abs(rs.solve(0.1, 0.005).m - rs.solve(0.1, 0.0).m) < 1e-5
    # RS retrieval is slightly re-entrant: alpha_c(T) first rises by ~1e-4 above 0.1379.
    assert 0.0 < rs.alpha_c(0.005) - rs.alpha_c(0.0) < 5e-4


@pytest.mark.parametrize("alpha,T", [(0.05, 0.3), (0.05, 0.5), (0.1, 0.2), (0.12, 0.05)])
def test_solution_satisfies_the_saddle_point_equations(alpha, T):
    # Independent check with adaptive quadrature: residuals at the level of the solver tolerances.
    s = rs.solve(alpha, T)
    assert s.retrieval
    m1, q1 = _gauss_moments(s.m, np.sqrt(alpha * s.r), 1.0 / T)
    assert abs(m1 - s.m) < 1e-7
    assert abs(q1 - s.q) < 1e-7
    assert abs(s.r - s.q / (1.0 - (1.0 - s.q) / T) ** 2) < 1e-9 * s.r


def test_spin_glass_state_appears_below_T_g():
    # The m = 0 state has q = 0 above T_g = 1 + sqrt(alpha) and q > 0 (and self-consistent) below.
    alpha = 0.05
    t_g = 1.0 + np.sqrt(alpha)
    assert rs.solve(alpha, t_g + 0.02).q == 0.0
    s = rs.solve(alpha, t_g - 0.1)
    assert s.m == 0.0 and s.q > 0.0
    assert abs(_gauss_moments(0.0, np.sqrt(alpha * s.r), 1.0 / s.T)[1] - s.q) < 1e-7


def test_T_M_zero_load_is_curie_weiss():
    # alpha = 0: m = tanh(beta m), nonzero iff T < 1; m(T = 0.5) = 0.95750 is its known root.
    assert rs.T_M(0.0) == 1.0
    assert abs(rs.overlap(0.0, 0.5) - 0.957504) < 1e-6
    assert rs.overlap(0.0, 1.01) == 0.0


@pytest.mark.parametrize("alpha", [1e-6, 1e-4])
def test_T_M_small_load_square_root_law(alpha):
    # T_M = 1 - 1.95 sqrt(alpha) + O(alpha): the ratio is 1.954 at 1e-6 and 1.958 at 1e-4.
    ratio = (1.0 - rs.T_M(alpha)) / np.sqrt(alpha)
    assert abs(ratio - 1.95) < 0.01


def test_retrieval_disappears_discontinuously_at_T_M():
    # For alpha > 0 the retrieval state vanishes at a fold: just below T_M the overlap is still
    # large (0.85 at alpha = 0.05), just above there is only m = 0.
    alpha = 0.05
    t_m = rs.T_M(alpha)
    assert 0.5 < t_m < 0.6
    assert rs.solve(alpha, t_m - 0.005).m > 0.8
    assert rs.solve(alpha, t_m + 0.005).m == 0.0


def test_overlap_tends_to_one_as_T_goes_to_zero_at_small_load():
    # At alpha = 0.01 the crosstalk noise is sqrt(alpha r) ~ 0.1, so m = 1 - O(exp(-1/(2 alpha))).
    temps = [0.8, 0.6, 0.4, 0.2, 0.05]
    ms = [rs.overlap(0.01, T) for T in temps]
    assert all(np.diff(ms) > 0)
    assert 1.0 - ms[-1] < 1e-9
    assert 1.0 - rs.overlap(0.01, 0.0) < 1e-12
