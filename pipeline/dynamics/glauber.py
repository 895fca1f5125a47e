"""Glauber (heat-bath) dynamics at temperature T: the finite-temperature retrieval.

At T -> 0 it reduces to the zero-temperature asynchronous dynamics; at T > 0 the final
overlap estimates the thermal retrieval state (e.g. m = tanh(m / T) at vanishing load).
"""

from __future__ import annotations

import numpy as np

from pipeline.dynamics._ising_kernels import SEED_HIGH, ising_couplings, prepare, relax_heat_bath
from pipeline.model import Model, NotApplicable, Param, Relaxation

# A thermal dynamics has no fixed points: the cell checks them with the zero-temperature one.
STOCHASTIC = True

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(100, int, "sweeps run per state", low=1),
    "temperature": Param(0.1, float, "temperature T (units of J)", low=0.0, open_low=True),
}


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Run max_sweeps heat-bath sweeps; converged means the last sweep flipped nothing."""
    if model.q > 2:
        raise NotApplicable("glauber dynamics is Ising-only (q=2)")
    J = ising_couplings(model, "glauber")
    S, H, JT = prepare(J, states)
    B = S.shape[0]
    seeds = rng.integers(0, SEED_HIGH, size=B, dtype=np.int64)
    converged = np.zeros(B, dtype=np.bool_)
    n = int(params["max_sweeps"])
    relax_heat_bath(S, H, JT, seeds, n, float(params["temperature"]), converged)
    return Relaxation(final=S, converged=converged, sweeps=np.full(B, n, dtype=np.int32))
