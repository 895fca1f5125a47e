"""Glauber (heat-bath) dynamics at temperature T: the finite-temperature retrieval.

At T -> 0 it reduces to the zero-temperature asynchronous dynamics. At T > 0 the quantity the
replica-symmetric theory (and TAP) predicts is the thermal overlap (1/N) sum_i xi_i <s_i>
(m = tanh(m / T) at vanishing load). One sample estimates it with thermal noise of order
sqrt((1 - q) / N); the time average of s over the last ``average_sweeps`` sweeps estimates it
with that noise divided by about sqrt(average_sweeps / tau) (tau: a few sweeps in the retrieval
state), so the relaxation reports that average as its ``magnetisation`` and the cell's overlaps
are those of <s_i>. The first max_sweeps - average_sweeps sweeps are the burn-in from the cue.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._ising_kernels import SEED_HIGH, heat_bath_averaged, ising_couplings, prepare
from amsweep.pipeline.model import Model, NotApplicable, Param, Relaxation

# A thermal dynamics has no fixed points: the cell checks them with the zero-temperature one.
STOCHASTIC = True

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(100, int, "sweeps run per state", low=1),
    "temperature": Param(0.1, float, "temperature T (units of J)", low=0.0, open_low=True),
    "average_sweeps": Param(
        50,
        int,
        "last sweeps whose states are averaged into <s_i> (the reported magnetisation); "
        "capped at max_sweeps; 1 = the final sample itself",
        low=1,
    ),
}


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Run max_sweeps heat-bath sweeps and average the last ``average_sweeps`` states.

    ``magnetisation`` is that time average; ``final`` its sign, a site with average exactly 0
    keeping its last sampled spin (so average_sweeps = 1 gives the last sample unchanged);
    ``converged`` means the last sweep flipped nothing (rare at T > 0, not a fixed point).
    """
    if model.q > 2:
        raise NotApplicable("glauber dynamics is Ising-only (q=2)")
    J = ising_couplings(model, "glauber")
    S, H, JT = prepare(J, states)
    B, N = S.shape
    seeds = rng.integers(0, SEED_HIGH, size=(B,), dtype=np.int64)
    converged = np.zeros(B, dtype=np.bool_)
    n = int(params["max_sweeps"])
    k = min(int(params.get("average_sweeps", PARAMS["average_sweeps"].default)), n)  # direct callers may omit it
    total = np.zeros((B, N), dtype=np.float64)
    heat_bath_averaged(S, H, JT, seeds, n, float(params["temperature"]), converged, k, total)
    mean = total / k
    final = np.where(mean > 0.0, 1, np.where(mean < 0.0, -1, S)).astype(np.int8)
    return Relaxation(final=final, converged=converged, sweeps=np.full(B, n, dtype=np.int32), magnetisation=mean)
