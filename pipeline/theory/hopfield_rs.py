"""Replica-symmetric (Amit-Gutfreund-Sompolinsky) theory of the Hopfield model with Hebbian J.

The simulations (TAP/AMP, Glauber, zero-temperature dynamics) are checked against these numbers.
With load alpha = P/N and temperature T = 1/beta, the retrieval state condensed on one pattern solves

    m = E_z tanh(beta (m + sigma z)),   q = E_z tanh^2(beta (m + sigma z)),
    sigma^2 = alpha r,                  r = q / (1 - beta (1 - q))^2,

with z ~ N(0, 1). Solving these as a fixed point is fragile near the fold where retrieval vanishes
(critical slowing down, jumps to the spin-glass branch). We instead parametrise the branch by m at
fixed beta: the first equation fixes sigma(m) by a monotone 1-d root, after which
alpha(m) = sigma^2 (1 - C)^2 / q, C = beta (1 - q), is explicit. alpha(m) vanishes at m -> 0 and at
the Curie-Weiss magnetisation m0(beta), so its maximum is alpha_c(T) (the fold) and the retrieval
state at load alpha is the root on the large-m side of the maximum. T_M(alpha) inverts alpha_c(T).
At T = 0 the equations reduce to one variable y = m / sqrt(2 alpha r):
sqrt(2 alpha) = erf(y) / y - (2 / sqrt(pi)) exp(-y^2), m = erf(y).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import erf

_Z_HALF_WIDTH = 9.0  # Gaussian weight exp(-40) at the cut: far below double precision needs
_TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)


@dataclass(frozen=True)
class RSSolution:
    """One replica-symmetric state: overlap m, Edwards-Anderson q, noise variance r (alpha r = sigma^2)."""

    alpha: float
    T: float
    m: float
    q: float
    r: float

    @property
    def retrieval(self) -> bool:
        """True for the state condensed on a pattern, False for the spin-glass / paramagnetic one."""
        return self.m > 0.0


def _tanh_moments(m: float, sigma: float, beta: float) -> tuple[float, float]:
    """E tanh(beta (m + sigma z)) and E tanh^2(...) by the trapezoid rule on a z grid.

    The integrand is analytic with poles at distance pi / (2 beta sigma) from the real axis, so the
    trapezoid rule converges like exp(-2 pi d / dz); dz = 1 / (2 beta sigma) gives ~1e-9 error
    at any temperature, and the grid grows only like beta sigma when T -> 0.
    """
    if sigma <= 0.0:
        t = np.tanh(beta * m)
        return float(t), float(t * t)
    dz = min(0.05, 0.5 / (beta * sigma))
    n = int(np.ceil(2.0 * _Z_HALF_WIDTH / dz)) | 1
    z = np.linspace(-_Z_HALF_WIDTH, _Z_HALF_WIDTH, n)
    w = np.exp(-0.5 * z * z)
    w /= w.sum()
    t = np.tanh(beta * (m + sigma * z))
    return float(w @ t), float(w @ (t * t))


def _curie_weiss(beta: float) -> float:
    """Largest root of m = tanh(beta m): the retrieval overlap at alpha = 0 (0 for beta <= 1)."""
    if beta <= 1.0:
        return 0.0
    return brentq(lambda m: np.tanh(beta * m) - m, 1e-12, 1.0, xtol=1e-15)


def _sigma_of_m(m: float, beta: float) -> float:
    """Noise width sigma that makes m a solution of the overlap equation (m <= m0(beta))."""
    g = lambda s: _tanh_moments(m, s, beta)[0] - m  # noqa: E731 - decreasing in s for m > 0
    if g(0.0) <= 0.0:
        return 0.0
    hi = 1.0
    while g(hi) > 0.0:
        hi *= 2.0
    return brentq(g, 0.0, hi, xtol=1e-13, rtol=1e-13)


def _branch(m: float, beta: float) -> tuple[float, float, float]:
    """(alpha, q, r) of the retrieval branch point with overlap m at inverse temperature beta."""
    sigma = _sigma_of_m(m, beta)
    _, q = _tanh_moments(m, sigma, beta)
    c = beta * (1.0 - q)
    if c >= 1.0 or q <= 0.0:
        return 0.0, q, np.inf  # not a valid RS retrieval state (r would be negative or infinite)
    r = q / (1.0 - c) ** 2
    return sigma * sigma / r, q, r


def _alpha_t0(y: float) -> float:
    """alpha(y) on the T = 0 retrieval branch, y = m / sqrt(2 alpha r)."""
    s = erf(y) / y - _TWO_OVER_SQRT_PI * np.exp(-y * y)
    return 0.5 * s * s


@lru_cache(maxsize=1)
def _fold_t0() -> float:
    """y at which alpha(y) is largest (alpha_c at T = 0)."""
    res = minimize_scalar(lambda y: -_alpha_t0(y), bounds=(0.3, 4.0), method="bounded", options={"xatol": 1e-10})
    return float(res.x)


@lru_cache(maxsize=256)
def _fold(beta: float) -> tuple[float, float]:
    """(m*, alpha_c) of the fold of the retrieval branch at inverse temperature beta."""
    m0 = _curie_weiss(beta)
    if m0 <= 0.0:
        return 0.0, 0.0
    res = minimize_scalar(
        lambda m: -_branch(m, beta)[0], bounds=(1e-6 * m0, m0), method="bounded", options={"xatol": 1e-9}
    )
    return float(res.x), float(-res.fun)


def alpha_c(T: float) -> float:
    """Largest load at which the retrieval state exists at temperature T (0.138 at T = 0, 0 at T >= 1)."""
    if T < 0:
        raise ValueError(f"temperature must be >= 0, got {T}")
    if T == 0.0:
        return _alpha_t0(_fold_t0())
    return _fold(1.0 / T)[1]


@lru_cache(maxsize=1)
def _reentrance() -> tuple[float, float]:
    """(T, alpha) of the largest load of the RS retrieval region.

    RS theory is slightly re-entrant: alpha_c(T) first rises from 0.1379 at T = 0 to about 0.1381
    near T = 0.01-0.02 before falling, so T_M is the upper branch above that temperature.
    """
    res = minimize_scalar(lambda T: -alpha_c(T), bounds=(1e-3, 0.1), method="bounded", options={"xatol": 1e-6})
    return float(res.x), float(-res.fun)


def T_M(alpha: float) -> float:
    """Temperature above which the retrieval state disappears at load alpha.

    T_M(0) = 1 (Curie-Weiss); T_M ~ 1 - 1.95 sqrt(alpha) at small alpha; 0.0 when alpha exceeds
    the largest RS retrieval load so that no temperature retrieves.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0.0:
        return 1.0
    t_top, a_top = _reentrance()
    if alpha >= a_top:
        return 0.0
    return brentq(lambda T: alpha_c(T) - alpha, t_top, 1.0, xtol=1e-10)


def _spin_glass(alpha: float, T: float) -> RSSolution:
    """The m = 0 RS state: q = E tanh^2(beta sigma z), sigma^2 = alpha q / (1 - beta (1 - q))^2.

    At T >= 1 + sqrt(alpha) only the paramagnet q = 0 exists. Below, alpha(sigma) along the m = 0
    branch increases from its value where C = beta (1 - q) < 1 first holds, so one root is bracketed.
    """
    if alpha == 0.0 or T >= 1.0 + np.sqrt(alpha):
        return RSSolution(alpha, T, 0.0, 0.0, 0.0)
    if T == 0.0:
        # C = sqrt(2 / (pi alpha r)) with q = 1: (1 - C)^2 r = 1 gives sqrt(r) = 1 + sqrt(2/(pi alpha)).
        return RSSolution(alpha, T, 0.0, 1.0, (1.0 + np.sqrt(2.0 / (np.pi * alpha))) ** 2)
    beta = 1.0 / T

    def excess(s: float) -> float:
        q = _tanh_moments(0.0, s, beta)[1]
        c = beta * (1.0 - q)
        return (s * s * (1.0 - c) ** 2 / q if c < 1.0 else 0.0) - alpha

    lo = 1e-9
    if beta > 1.0:  # C = beta (1 - q(sigma)) decreases in sigma: start where it drops below 1
        lo = brentq(lambda s: beta * (1.0 - _tanh_moments(0.0, s, beta)[1]) - 1.0, 1e-9, 1e3, xtol=1e-14)
    hi = max(2.0 * lo, 1.0)
    while excess(hi) < 0.0:
        hi *= 2.0
    s = brentq(excess, lo, hi, xtol=1e-13)
    q = _tanh_moments(0.0, s, beta)[1]
    return RSSolution(alpha, T, 0.0, q, s * s / alpha)


def solve(alpha: float, T: float) -> RSSolution:
    """The RS retrieval state (m > 0) at (alpha, T), or the m = 0 state if retrieval does not exist.

    The retrieval state is a local minimum of the free energy; it is the global one only below
    T_c(alpha) < T_M(alpha), which is the right comparison for dynamics started near a pattern.
    """
    if alpha < 0 or T < 0:
        raise ValueError(f"need alpha >= 0 and T >= 0, got alpha={alpha}, T={T}")
    if T == 0.0:
        if alpha == 0.0:
            return RSSolution(alpha, T, 1.0, 1.0, 1.0)
        y_star = _fold_t0()
        if alpha > _alpha_t0(y_star):
            return _spin_glass(alpha, T)
        y = brentq(lambda y: _alpha_t0(y) - alpha, y_star, 50.0, xtol=1e-14)
        m = float(erf(y))
        c = _TWO_OVER_SQRT_PI * y * np.exp(-y * y) / m
        return RSSolution(alpha, T, m, 1.0, 1.0 / (1.0 - c) ** 2)
    beta = 1.0 / T
    m0 = _curie_weiss(beta)
    if alpha == 0.0:
        q0 = m0 * m0
        return RSSolution(alpha, T, m0, q0, q0 / (1.0 - beta * (1.0 - q0)) ** 2 if m0 > 0 else 0.0)
    m_star, a_c = _fold(beta)
    if alpha > a_c:
        return _spin_glass(alpha, T)
    m = brentq(lambda m: _branch(m, beta)[0] - alpha, m_star, m0, xtol=1e-13)
    _, q, r = _branch(m, beta)
    return RSSolution(alpha, T, m, q, r)


def overlap(alpha: float, T: float) -> float:
    """Retrieval overlap m(alpha, T) of the RS theory (0 beyond the retrieval region)."""
    return solve(alpha, T).m
