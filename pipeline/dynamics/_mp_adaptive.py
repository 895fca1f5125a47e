"""Numba kernels of the site-wise part of the adaptive TAP step (``tap_correlated``).

Why a kernel: each TAP iteration turns three (B, N) arrays (variances, cavity response, field)
into the reaction coefficient, the new magnetisation and its change, element by element. Fusing
these into one pass keeps the step's cost in the BLAS products of ``tap_correlated``.

With v = 1 - m^2 the site variance and g the cavity response of site i, the linear-response
condition v = d + g d^2 fixes the site's effective variance d and the reaction coefficient
R = (1/d - 1/v); both are written without the 1/v and 1/g that vanish at saturated sites or at
the cue (v = 0):

    d = 2 v / (1 + sqrt(1 + 4 g v)),    R = g d / v = 2 g / (1 + sqrt(1 + 4 g v)).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def effective_variances(v: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d (B, N) solving v = d + g d^2 for the given responses g: the variance a site contributes
    to the pattern-field covariance (d <= v; d = v where g = 0, d -> 0 as g grows)."""
    out = np.empty_like(v)
    B, N = v.shape
    for b in range(B):
        for i in range(N):
            out[b, i] = 2.0 * v[b, i] / (1.0 + np.sqrt(1.0 + 4.0 * g[b, i] * v[b, i]))
    return out


@njit(cache=True)
def site_update(
    m: np.ndarray, v: np.ndarray, g: np.ndarray, field: np.ndarray, beta: float, keep: float
) -> tuple[np.ndarray, np.ndarray]:
    """m_new = (1 - keep) tanh(beta field - R m) + keep m, and max_i |m_new - m| per row.

    ``field`` is the naive field sum_mu xi_i^mu M_mu (self-coupling alpha included); R removes the
    self-coupling and the reaction of site i on the pattern fields together.
    """
    B, N = m.shape
    out = np.empty_like(m)
    delta = np.zeros(B)
    for b in range(B):
        worst = 0.0
        for i in range(N):
            R = 2.0 * g[b, i] / (1.0 + np.sqrt(1.0 + 4.0 * g[b, i] * v[b, i]))
            new = (1.0 - keep) * np.tanh(beta * field[b, i] - R * m[b, i]) + keep * m[b, i]
            worst = max(worst, abs(new - m[b, i]))
            out[b, i] = new
        delta[b] = worst
    return out, delta
