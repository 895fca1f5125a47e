"""Krotov-Hopfield asynchronous zero-temperature dynamics for dense associative memories.

Why its own dynamics: the dense energy E(s) = -sum_mu F(xi^mu . s) has no pairwise couplings J
for n > 2, so sign(J s) cannot evaluate it. Each site flips if that lowers E, computed from the
K pattern overlaps (kernel in `_mp_dense`). A model without an ``interaction`` entry (e.g. Hebb,
which stores its patterns in ``memories``) is read as F(x) = x^2, the Hopfield energy.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._mp_dense import relax_batch
from amsweep.pipeline.model import Model, NotApplicable, Param, Relaxation

NEEDS = ("memories",)  # the dense energy is a function of the overlaps with the memories

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(100, int, "maximum number of full asynchronous sweeps", low=1),
}


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Relax each cue (B, N) +-1 to a local minimum of the dense energy, or stop at max_sweeps."""
    if model.memories is None:
        raise NotApplicable("dense dynamics needs stored memories (model.memories), this model has none")
    if model.q != 2:
        raise NotApplicable(f"dense dynamics is written for +-1 states, got q = {model.q}")
    interaction = model.params.get("interaction", "poly")
    if interaction not in ("poly", "exp"):
        raise NotApplicable(f"dense dynamics knows interactions 'poly' and 'exp', not {interaction!r}")
    XT = np.ascontiguousarray(np.asarray(model.memories, dtype=np.float64).T)
    states = np.asarray(states, dtype=np.int8)
    if states.ndim != 2 or states.shape[1] != XT.shape[0]:
        raise ValueError(f"states must be (B, {XT.shape[0]}), got {states.shape}")
    seeds = rng.integers(0, 2**31 - 1, size=(states.shape[0],))
    final, converged, sweeps = relax_batch(
        XT,
        states,
        interaction == "exp",
        int(model.params.get("n", 2)),
        float(model.params.get("beta", 1.0)),
        int(params["max_sweeps"]),
        seeds,
    )
    return Relaxation(final=final, converged=converged, sweeps=sweeps)
