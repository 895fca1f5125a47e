"""Gardner's capacity of a perceptron with margin kappa, for unbiased random patterns.

alpha_c(kappa) = 1 / I(kappa), I(kappa) = int_{-kappa}^inf Dt (t + kappa)^2 (Gaussian
measure Dt), alpha_c(0) = 2. The Krauth-Mezard rule is checked against it, and the
max-stability kappa_max(alpha) solves the same equation. The closed form of I (error
function) and the quadrature are independent evaluations of the same integral, so each
checks the other.
"""

from __future__ import annotations

import math

from scipy.integrate import quad
from scipy.optimize import brentq


def _phi(t: float) -> float:
    """Standard Gaussian density."""
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def gardner_integral(kappa: float) -> float:
    """I(kappa) in closed form: (1 + kappa^2) Phi(kappa) + kappa phi(kappa).

    From int_{-k}^inf Dt t^2 = Phi(k) - k phi(k), int Dt t = phi(k), int Dt = Phi(k),
    with Phi(k) = (1 + erf(k / sqrt 2)) / 2.
    """
    cdf = 0.5 * math.erfc(-kappa / math.sqrt(2.0))
    return (1.0 + kappa * kappa) * cdf + kappa * _phi(kappa)


def gardner_integral_quad(kappa: float) -> float:
    """I(kappa) by adaptive quadrature of the defining integral."""
    value, _ = quad(lambda t: _phi(t) * (t + kappa) ** 2, -kappa, math.inf, epsabs=1e-13, epsrel=1e-12)
    return value


def alpha_c(kappa: float) -> float:
    """Critical load alpha_c(kappa) = 1 / I(kappa) (replica symmetric, exact for kappa >= 0)."""
    return 1.0 / gardner_integral(kappa)


def alpha_c_quad(kappa: float) -> float:
    """alpha_c(kappa) from the quadrature (a cross-check of :func:`alpha_c`)."""
    return 1.0 / gardner_integral_quad(kappa)


def kappa_max(alpha: float) -> float:
    """Largest margin storable at load alpha: the root of alpha_c(kappa) = alpha.

    Positive for alpha < 2, zero at alpha = 2; for alpha > 2 the root is negative (the
    replica-symmetric continuation, where the solution space is no longer convex).
    """
    if not alpha > 0.0:
        raise ValueError(f"kappa_max needs alpha > 0, got {alpha}")
    lo, hi = -1.0, 1.0

    def f(k: float) -> float:  # decreasing in kappa
        return alpha_c(k) - alpha

    while f(hi) > 0.0:
        hi *= 2.0
    while f(lo) < 0.0:
        lo *= 2.0
    return brentq(f, lo, hi, xtol=1e-14, rtol=1e-14)
