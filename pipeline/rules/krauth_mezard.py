"""Krauth-Mezard (Minover) perceptron rule: every row J_i stores all patterns with margin.

Stability Delta_i^mu = xi_i^mu h_i^mu / |J_i| with h_i = sum_j J_ij xi_j: Gardner's O(1)
normalisation (docs/science.md#learning-rules; dividing by |J_i| / sqrt N instead is the
same quantity only if h carries a 1 / sqrt N: with h = J s it would be sqrt(N) times larger).
Gardner's bound says margin kappa is reachable for alpha < alpha_c(kappa) (alpha_c(0) = 2), and
Minover reaches it, or the maximal stability in the ``max_stability`` mode, by adding the least
stable pattern.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, require_ising
from amsweep.pipeline.rules._minover import MARGIN, MAX_STABILITY, minover_rows

PARAMS: dict[str, Param] = {
    "kappa": Param(0.0, float, "target margin of the normalised stabilities (mode 'margin')", low=0.0),
    "mode": Param(
        "margin",
        str,
        "'margin': stop at min stability >= kappa; 'max_stability': run Minover until the duality gap is below tol",
        choices=("margin", "max_stability"),
    ),
    "max_epochs": Param(200, int, "update budget per row, in units of P updates", low=1),
    "tol": Param(
        0.01, float, "relative duality gap that ends 'max_stability'", low=0.0, high=1.0, open_low=True, open_high=True
    ),
}
POTTS = False
QUICK = {"max_epochs": 20}  # the conformance kit's settings: the default takes seconds at N = 32


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """N independent Minover perceptrons; rows normalised to |J_i| = 1 (only directions matter)."""
    require_ising(q, "krauth_mezard")
    Xf = as_spins(X)
    P, N = Xf.shape
    X64 = Xf.astype(np.float64)
    Q = X64 @ X64.T
    counts = np.zeros((N, P))
    lower = np.full(N, -np.inf)
    upper = np.full(N, np.inf)
    status = np.zeros(N, dtype=np.int8)
    mode = MARGIN if params["mode"] == "margin" else MAX_STABILITY
    max_updates = int(params["max_epochs"]) * P
    minover_rows(
        np.ascontiguousarray(X64.T),
        Q,
        float(params["kappa"]),
        mode,
        float(params["tol"]),
        max_updates,
        counts,
        lower,
        upper,
        status,
    )
    A = (counts * X64.T).astype(np.float32)  # A[i, mu] = c_{i mu} xi_i^mu
    J = A @ Xf
    np.fill_diagonal(J, 0.0)
    norms = np.linalg.norm(J.astype(np.float64), axis=1)
    J /= np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]
    info = {
        "converged": bool(np.all(status == 1)),
        "rows_converged": float(np.mean(status == 1)),
        "rows_infeasible": float(np.mean(status == -1)),
        "min_stability": float(lower.min()),
        "kappa_max_bounds": (float(np.median(lower)), float(np.median(upper))),
        "updates": int(counts.sum()),
    }
    return Model(q=2, J=J, params={}, info=info)
