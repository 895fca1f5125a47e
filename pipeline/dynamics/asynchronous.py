"""Zero-temperature asynchronous retrieval: the standard Hopfield dynamics.

Random sequential updates s_i <- sign(h_i) (ties keep the spin) descend the energy for
symmetric J and end at a fixed point; asymmetric J (PLM) may cycle, hence the sweep
budget and the converged flag.
Potts models (q > 2) are handed to the Potts kernel (s_i <- argmax_a h_i(a)).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._ising_kernels import (
    SEED_HIGH,
    ising_couplings,
    prepare,
    relax_zero_t,
    tie_tolerance,
)
from amsweep.pipeline.model import Model, Param, Relaxation

POTTS = True  # q > 2: the Potts kernel

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(100, int, "sweep budget per state (a fixed point usually comes within a few sweeps)", low=1),
}


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Relax each of the B states to a fixed point (or until max_sweeps)."""
    if model.q > 2:
        from amsweep.pipeline.dynamics._potts import relax_async

        return relax_async(model, states, params, rng)
    J = ising_couplings(model, "asynchronous")
    S, H, JT = prepare(J, states)
    B = S.shape[0]
    seeds = rng.integers(0, SEED_HIGH, size=(B,), dtype=np.int64)
    converged = np.zeros(B, dtype=np.bool_)
    sweeps = np.zeros(B, dtype=np.int32)
    relax_zero_t(S, H, JT, tie_tolerance(J), seeds, int(params["max_sweeps"]), converged, sweeps)
    return Relaxation(final=S, converged=converged, sweeps=sweeps)
