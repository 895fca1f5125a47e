"""Minover (Krauth-Mezard) for all N perceptrons at once, in the pattern (dual) picture.

Row i is J_i = (1/N) sum_mu c_{i mu} z_i^mu with z_i^mu = xi_i^mu xi^mu without site i and
integer counts c. The fields then live in pattern space: N h-stabilities
E_i^nu = sum_mu c_{i mu} z_i^mu . z_i^nu, and z_i^mu . z_i^nu = xi_i^mu xi_i^nu (Q_{mu nu}
- xi_i^mu xi_i^nu) with Q = X X^T. One update costs O(P), not O(N), and all sums are
exact integers (kept in float64, exact below 2^53).

Stabilities are Gardner's, Delta_i^mu = xi_i^mu h_i^mu / |J_i| with h_i = sum_j J_ij xi_j:
O(1), and the scale on which alpha_c(kappa) is stated (equivalently xi h / (|J_i| / sqrt N)
with the field normalised as h_i = sum_j J_ij xi_j / sqrt N).

Minover is Frank-Wolfe with step 1/t on the min-norm point of the convex hull of the z_i^mu,
whose norm is the optimal margin. This gives a certificate at every step:
  lower bound  L = min_nu E^nu / |K|        (the current min stability)
  upper bound  U = |K| / sum_mu c_mu        (norm of a point of the hull)
with K = N J_i, and L <= kappa_max(row) <= U.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MARGIN = 0  # stop a row once its min stability reaches kappa
MAX_STABILITY = 1  # stop a row once L >= (1 - tol) U


@njit(cache=True)
def minover_rows(
    XT: np.ndarray,
    Q: np.ndarray,
    kappa: float,
    mode: int,
    tol: float,
    max_updates: int,
    counts: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    status: np.ndarray,
) -> None:
    """Run Minover on every row, filling counts (N, P), the bounds L, U and status per row.

    status: 1 converged (margin reached / gap closed), -1 certified impossible (U < kappa,
    margin mode), 0 update budget spent.
    """
    N, P = XT.shape
    E = np.empty(P)
    for i in range(N):
        x = XT[i]
        E[:] = 0.0
        norm2 = 0.0
        total = 0.0
        st = 0
        for _ in range(max_updates + 1):
            mu = 0
            for nu in range(1, P):
                if E[nu] < E[mu]:
                    mu = nu
            if total > 0.0:
                lower[i] = E[mu] / np.sqrt(norm2)
                upper[i] = np.sqrt(norm2) / total
                if mode == MARGIN:
                    if E[mu] > 0.0 and lower[i] >= kappa:
                        st = 1
                        break
                    if upper[i] < kappa:
                        st = -1
                        break
                elif E[mu] > 0.0 and lower[i] >= (1.0 - tol) * upper[i]:
                    st = 1
                    break
            if total >= max_updates:
                break
            # add z_i^mu: fields and |K|^2 follow in O(P)
            x_mu = x[mu]
            norm2 += 2.0 * E[mu] + (N - 1)
            q = Q[mu]
            for nu in range(P):
                x_nu = x[nu]
                E[nu] += x_mu * x_nu * (q[nu] - x_mu * x_nu)
            counts[i, mu] += 1.0
            total += 1.0
        status[i] = st
