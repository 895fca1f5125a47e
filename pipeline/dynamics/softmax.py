"""Modern Hopfield / kernel-density retrieval: mean-shift on a Gaussian mixture of memories.

Why mean-shift: the energy E(x) = -(1/beta) log sum_mu w_mu exp(-beta |x - xi_mu|^2 / 2) of a
kernel-density (or modern Hopfield) memory is lowered by the fixed-point update
x <- sum_mu softmax_mu(log w_mu - beta |x - xi_mu|^2 / 2) xi_mu, which converges in a few steps
and needs only (B x N) @ (N x K) products. For +-1 patterns |xi|^2 is constant and the logits
reduce to beta x . xi (softmax attention). The continuous state is binarised with sign at the end.

The model supplies ``params["beta"]`` (raw-unit inverse temperature, set by the kde, dense and
crp_memory rules) and optionally ``params["log_weights"]`` (K,), the mixture weights of memories
of unequal mass (crp_memory); absent weights mean equal ones.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param, Relaxation
from amsweep.pipeline.ties import signs

NEEDS = ("mixture",)  # memories and their inverse temperature

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(100, int, "maximum number of mean-shift iterations", low=1),
    "tol": Param(
        1e-4,
        float,
        "converged when max_i |x_i - x_i(previous)| < tol (float32 state: keep tol >= 1e-6)",
        low=0.0,
        open_low=True,
    ),
}


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that no exponent overflows."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def mean_shift(model: Model, states: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous fixed points x (B, N) of the mean-shift map from the cues, with convergence flags."""
    if model.memories is None:
        raise NotApplicable("softmax retrieval needs stored memories (model.memories), this model has none")
    if "beta" not in model.params:
        raise NotApplicable(
            "softmax retrieval needs an inverse temperature model.params['beta'] (set by kde, dense, crp_memory)"
        )
    if model.q != 2:
        raise NotApplicable(f"softmax retrieval binarises +-1 states, got q = {model.q}")
    mem = np.asarray(model.memories, dtype=np.float32)
    K, N = mem.shape
    x = np.asarray(states, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != N:
        raise ValueError(f"states must be (B, {N}), got {x.shape}")
    beta = np.float32(model.params["beta"])
    bias = -0.5 * beta * np.einsum("kn,kn->k", mem, mem)
    if "log_weights" in model.params:
        bias = bias + np.asarray(model.params["log_weights"], dtype=np.float32)
    bias = bias.astype(np.float32)
    B = x.shape[0]
    max_sweeps, tol = int(params["max_sweeps"]), float(params["tol"])
    converged = np.zeros(B, dtype=bool)
    sweeps = np.full(B, max_sweeps, dtype=np.int32)
    active = np.arange(B)
    for t in range(1, max_sweeps + 1):
        xa = x[active]
        x_new = _softmax_rows(beta * (xa @ mem.T) + bias) @ mem
        done = np.max(np.abs(x_new - xa), axis=1) < tol
        x[active] = x_new
        converged[active[done]] = True
        sweeps[active[done]] = t
        active = active[~done]
        if active.size == 0:
            break
    return x, converged, sweeps


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Mean-shift to convergence, then sign (ties +1); deterministic, ``rng`` is unused.

    A tie is a site within float32 rounding of 0 (``ties.signs``): a state balanced between
    memories of opposite sign there reads +1 whatever the sign of its rounding remainder, so the
    read-out does not depend on the BLAS or on denormals being flushed.
    """
    x, converged, sweeps = mean_shift(model, states, params)
    final = signs(x, tie=1.0).astype(np.int8)
    return Relaxation(final=final, converged=converged, sweeps=sweeps)
