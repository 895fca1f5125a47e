"""TAP / AMP retrieval in a Hebbian network at inverse temperature beta (Mezard 2017).

Why AMP rather than Glauber sampling: it computes the thermal magnetisations <s_i> of the state
reached from a cue in O(N P) per iteration, deterministically, and its fixed points are the TAP
equations whose large-N statistics reproduce the replica-symmetric theory
(`amsweep.pipeline.theory.hopfield_rs`). The couplings J = X^T X / N are never formed: every step is two
(B x N) @ (N x P) products over the patterns X = model.memories. One set of equations serves all
patterns (docs/science.md#retrieval-dynamics), with M = X m / N, q = mean(m^2),
c = 1 / (1 - beta (1 - q)):

    u^t = c (M^t - beta (1 - q) u^{t-1}),   m^{t+1} = tanh(beta X^T u^t - alpha beta c m^t).

At a fixed point u = M and the Onsager term alpha beta c m_i removes both the self-coupling
J_ii = alpha that the pattern sum contains and the reaction of site i on its own field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param, Relaxation

NEEDS = ("patterns",)  # J = X^T X / N of +-1 patterns, never formed

PARAMS: dict[str, Param] = {
    "beta": Param(4.0, float, "inverse temperature 1/T of the Hebbian network", low=0.0, open_low=True),
    "damping": Param(
        0.0,
        float,
        "fraction of the previous m, variance and u kept per step (0 = plain AMP)",
        low=0.0,
        high=1.0,
        open_high=True,
    ),
    "max_sweeps": Param(100, int, "maximum number of AMP iterations", low=1),
    "tol": Param(1e-6, float, "converged when max_i |m_i - m_i(previous)| < tol", low=0.0, open_low=True),
}

# Start from m = 0.95 x cue (docs/science.md#retrieval-dynamics): polarised towards the cue, not saturated.
_CUE_SCALE = 0.95
_MAX_C = 0.95  # cap of C = beta (1 - q) < 1, keeps c = 1 / (1 - C) <= 20 (see _amp)


@dataclass(frozen=True)
class TapResult:
    """Magnetisations at the end of the iteration, per cue convergence flag and iterations used."""

    m: np.ndarray  # (B, N) float64
    converged: np.ndarray  # (B,) bool
    sweeps: np.ndarray  # (B,) int32


def stored_patterns(model: Model) -> np.ndarray:
    """The +-1 patterns (P, N) of a Hebbian model; TAP's Onsager term assumes xi_i^2 = 1."""
    if model.memories is None:
        raise NotApplicable("TAP needs the stored patterns (model.memories), this model has none")
    if model.q != 2:
        raise NotApplicable(f"TAP is written for Ising models (q = 2), got q = {model.q}")
    # float64: the field X^T u contains alpha m_i, which the Onsager term cancels by subtraction,
    # and tol is typically 1e-6 on m; the products are O(B N P), small next to training.
    X = np.asarray(model.memories, dtype=np.float64)
    if not np.all(np.abs(X) == 1.0):
        raise NotApplicable("TAP for Hebbian couplings needs +-1 patterns; model.memories are not +-1")
    return X


def _amp(X: np.ndarray, m: np.ndarray, beta: float, damping: float, max_sweeps: int, tol: float) -> TapResult:
    """Iterate the AMP equations on all cues at once; a cue stops updating once it has converged.

    AMP carries, next to m, the site variances whose mean gives C = beta (1 - q). The start
    m^0 = 0.95 cue is a given point, not a tanh output, so it gets variance 0: C^0 = 0, c^0 = 1,
    u^0 = M^0 and the first step is naive mean field with zero diagonal. (Variances 1 - 0.95^2
    would make C^0 > 1 for beta > 10, c^0 < 0 and the reaction term flip the cue.) C is capped at
    _MAX_C: the RS retrieval state has C < 0.8 for alpha >= 0.01 and reaches the cap only within
    1% of T_M at alpha <= 1e-4; C -> 1 where RS message passing has no stable fixed point.
    Damping (as in damped GAMP) mixes m, the mean variance and u with their previous values, which
    leaves every fixed point unchanged and keeps C the mean variance of the damped state.
    Freezing converged rows makes each cue's result independent of the batch it travels in.
    """
    P, N = X.shape
    alpha = P / N
    B = m.shape[0]
    var = np.zeros(B)  # mean site variance 1 - q of the current state (0 for the cue itself)
    u_prev = np.zeros((B, P))  # multiplied by C^0 = 0 in the first step
    converged = np.zeros(B, dtype=bool)
    sweeps = np.full(B, max_sweeps, dtype=np.int32)
    active = np.arange(B)
    keep = 1.0 - damping
    for t in range(1, max_sweeps + 1):
        ma, ua = m[active], u_prev[active]
        C = np.minimum(beta * var[active], _MAX_C)
        c = 1.0 / (1.0 - C)
        u = c[:, None] * (ma @ X.T / N - C[:, None] * ua)
        m_new = np.tanh(beta * (u @ X) - (alpha * beta * c)[:, None] * ma)
        v_new = 1.0 - np.mean(m_new * m_new, axis=1)
        if damping > 0.0:
            u = damping * ua + keep * u if t > 1 else u
            m_new = damping * ma + keep * m_new
            v_new = damping * var[active] + keep * v_new
        delta = np.max(np.abs(m_new - ma), axis=1)
        m[active], u_prev[active], var[active] = m_new, u, v_new
        done = delta < tol
        converged[active[done]] = True
        sweeps[active[done]] = t
        active = active[~done]
        if active.size == 0:
            break
    return TapResult(m=m, converged=converged, sweeps=sweeps)


def run(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> TapResult:
    """AMP from the cues ``states`` (B, N) +-1; deterministic, ``rng`` is unused."""
    X = stored_patterns(model)
    m0 = _CUE_SCALE * np.asarray(states, dtype=np.float64)
    if m0.ndim != 2 or m0.shape[1] != X.shape[1]:
        raise ValueError(f"states must be (B, {X.shape[1]}), got {m0.shape}")
    beta, damping = float(params["beta"]), float(params["damping"])
    return _amp(X, m0, beta, damping, int(params["max_sweeps"]), float(params["tol"]))


def polarizations(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Continuous magnetisations m (B, N) = <s_i> of the TAP state reached from each cue."""
    return run(model, states, params, rng).m


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """The TAP magnetisations m (what the cell's overlaps are computed from) and their read-out.

    ``final`` = sign(m) (ties +1) is the binarised read-out (it decides ``success_train``);
    ``converged`` means AMP reached max_i |m_i - m_i(previous)| < tol, i.e. a TAP fixed point.
    Used with max_sweeps = 1 from a pattern (the cell's fixed-point check) the first AMP step
    is naive mean field with zero diagonal, sign(m) = sign(J xi): the check is the
    zero-temperature fixed-point property of the Hebbian couplings, whatever beta.
    """
    res = run(model, states, params, rng)
    final = np.where(res.m >= 0.0, 1, -1).astype(np.int8)
    return Relaxation(final=final, converged=res.converged, sweeps=res.sweeps, magnetisation=res.m)
