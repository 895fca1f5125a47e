"""TAP for a Hebbian network with correlated patterns: adaptive (Opper-Winther) reaction term.

Why not plain TAP (``tap``): its Onsager term alpha beta c m_i, c = 1 / (1 - beta (1 - q)),
assumes that the P pattern fields lambda_mu = xi^mu . s / sqrt(N) fluctuate independently. When
patterns share hidden features (``datasets.correlated``) the fields are correlated through the
pattern overlap matrix and the reaction of site i on its own field is the quadratic form
(docs/science_correlated_tap.md)

    R_i = 2 g_i / (1 + sqrt(1 + 4 g_i v_i)),   g_i = (beta / N) xi_i^T G xi_i,
    G = (I - (beta / N) X diag(d) X^T)^-1,      d_i = 2 v_i / (1 + sqrt(1 + 4 g_i v_i)),
    m_i = tanh(beta sum_mu xi_i^mu M_mu - R_i m_i),   M = X m / N,  v_i = 1 - m_i^2,

with xi_i the column (P,) of the patterns at site i. It uses the patterns only, not how they were
made, so the same equations serve independent patterns (where R_i -> alpha beta c, plain TAP)
and any correlation depth. The P x P resolvent G resums every chain pattern -> site -> pattern
of the feature structure. Cost per iteration and cue: O(N P^2 + P^3) in batched BLAS/LAPACK
calls (plain TAP: O(N P)), so it is meant for N up to a few thousand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amsweep.pipeline.dynamics._mp_adaptive import effective_variances, site_update
from amsweep.pipeline.dynamics import tap
from amsweep.pipeline.dynamics.tap import stored_patterns
from amsweep.pipeline.model import Model, Param, Relaxation

NEEDS = ("patterns",)  # J = X^T X / N of +-1 patterns, as plain TAP

PARAMS: dict[str, Param] = {
    "beta": tap.PARAMS["beta"],  # the same network and temperature as plain TAP
    "damping": Param(
        0.5,
        float,
        "fraction of the previous m kept per step (0 = undamped TAP iteration)",
        low=0.0,
        high=1.0,
        open_high=True,
    ),
    "max_sweeps": Param(500, int, "maximum number of TAP iterations", low=1),
    "tol": tap.PARAMS["tol"],
}

_CUE_SCALE = 0.95  # as plain TAP: start from m = 0.95 x cue, with variance 0 (the cue is given)
# Cap of the eigenvalues of K = (beta / N) X diag(d) X^T in the resolvent: a transient state (a
# cue on its way to a feature state passes near the paramagnet) can drive the Gaussian response
# of the pattern fields to diverge. A state where the cap still bites is not a solution of the
# equations, so it does not count as converged. 0.95 (amplification <= 20, as plain TAP's c): a
# looser cap (0.99) let transients settle on such capped pseudo-fixed points at alpha = 0.2.
# Where the iteration ends with the cap still active the equations have no solution near the
# start: ``no_solution``, and no magnetisation is reported for that start. It happens where Monte
# Carlo sits in one state (depth 1, alpha 0.1, T 0.6, N 300: both starts of tests' instance seed
# 0, chains within 0.09 of each other), so it is the equations that fail there, not a choice of state.
_MAX_RESPONSE = 0.95


@dataclass(frozen=True)
class AdaptiveResult:
    """Magnetisations, per cue convergence flag, iterations used and the final reaction terms."""

    m: np.ndarray  # (B, N) float64
    converged: np.ndarray  # (B,) bool
    sweeps: np.ndarray  # (B,) int32
    reaction: np.ndarray  # (B, N) float64: R_i of the last step (plain TAP: alpha beta c for all i)
    no_solution: np.ndarray  # (B,) bool: stopped unconverged with the response cap active (see ``no_solution``)


def _resolvent(X: np.ndarray, d: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """G = (I - K)^-1 with K = (beta / N) X diag(d) X^T per cue (B, P, P), eigenvalues of K capped
    at _MAX_RESPONSE, and whether the cap bit. One batched symmetric eigendecomposition gives both.
    """
    N = X.shape[1]
    K = np.matmul(X[None, :, :] * d[:, None, :], X.T) * (beta / N)
    lam, U = np.linalg.eigh(K)
    capped = lam[:, -1] > _MAX_RESPONSE
    G = np.matmul(U / (1.0 - np.minimum(lam, _MAX_RESPONSE))[:, None, :], np.swapaxes(U, 1, 2))
    return G, capped


def _responses(X: np.ndarray, G: np.ndarray, beta: float) -> np.ndarray:
    """g (B, N): (beta / N) xi_i^T G xi_i for every site, as one batched product (N, P) @ (B, P, P)."""
    XT = X.T
    return np.einsum("bnp,np->bn", np.matmul(XT[None, :, :], G), XT) * (beta / X.shape[1])


def _iterate(X: np.ndarray, m: np.ndarray, beta: float, damping: float, max_sweeps: int, tol: float) -> AdaptiveResult:
    """Damped TAP iteration of all cues at once; a cue stops updating once it has converged.

    The first step has v = 0 (the cue is a given point): d = 0, G = I, g = R = alpha beta, i.e.
    naive mean field with zero diagonal, as in plain TAP. Then d comes from the previous step's g
    and the responses g are damped like m: d and g feed back on each other through G, and undamped
    they can settle into a period-2 cycle. Damping leaves every fixed point unchanged. Freezing
    converged rows makes each cue's result independent of the batch it travels in.
    """
    P, N = X.shape
    B = m.shape[0]
    v = np.zeros((B, N))
    g = np.full((B, N), beta * P / N)
    converged = np.zeros(B, dtype=bool)
    capped_last = np.zeros(B, dtype=bool)
    sweeps = np.full(B, max_sweeps, dtype=np.int32)
    active = np.arange(B)
    for t in range(1, max_sweeps + 1):
        ma, va = m[active], v[active]
        G, capped = _resolvent(X, effective_variances(va, g[active]), beta)
        keep = damping if t > 1 else 0.0
        ga = (1.0 - keep) * _responses(X, G, beta) + keep * g[active]
        field = (ma @ X.T / N) @ X
        m_new, delta = site_update(ma, va, ga, field, beta, keep)
        m[active], v[active], g[active] = m_new, 1.0 - m_new * m_new, ga
        capped_last[active] = capped
        done = (delta < tol) & ~capped
        converged[active[done]] = True
        sweeps[active[done]] = t
        active = active[~done]
        if active.size == 0:
            break
    reaction = 2.0 * g / (1.0 + np.sqrt(1.0 + 4.0 * g * v))
    return AdaptiveResult(
        m=m, converged=converged, sweeps=sweeps, reaction=reaction, no_solution=capped_last & ~converged
    )


def run(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator | None) -> AdaptiveResult:
    """Adaptive TAP from the cues ``states`` (B, N) +-1; deterministic, ``rng`` is unused."""
    X = stored_patterns(model)
    m0 = _CUE_SCALE * np.asarray(states, dtype=np.float64)
    if m0.ndim != 2 or m0.shape[1] != X.shape[1]:
        raise ValueError(f"states must be (B, {X.shape[1]}), got {m0.shape}")
    return _iterate(
        X, m0, float(params["beta"]), float(params["damping"]), int(params["max_sweeps"]), float(params["tol"])
    )


def polarizations(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator | None) -> np.ndarray:
    """Continuous magnetisations m (B, N) = <s_i> of the state reached from each cue."""
    return run(model, states, params, rng).m


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator | None) -> Relaxation:
    """The magnetisations (what the cell's overlaps are computed from) and their read-out sign(m).

    ``converged``: the step fell below ``tol`` with the response cap inactive, i.e. a solution of
    the adaptive TAP equations. With max_sweeps = 1 from a pattern (the cell's fixed-point check)
    the step is naive mean field with zero diagonal, sign(m) = sign(J xi), as for plain TAP.

    A start with no solution (``AdaptiveResult.no_solution``: still capped when the iteration
    stopped) has no thermal state: its magnetisation row is NaN, so thermal overlaps skip it and
    ``no_solution_train`` counts it (``metrics.solved_rows``). ``final`` stays the sign of the
    last iterate (ties +1), which the fixed-point and success counts read.
    """
    res = run(model, states, params, rng)
    final = np.where(res.m >= 0.0, 1, -1).astype(np.int8)
    magnetisation = np.where(res.no_solution[:, None], np.nan, res.m)
    return Relaxation(final=final, converged=res.converged, sweeps=res.sweeps, magnetisation=magnetisation)
