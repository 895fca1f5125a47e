"""Zero-temperature synchronous (parallel) retrieval: s <- sign(J s) for all sites at once.

Parallel updates can end in 2-cycles even for symmetric J; those are detected, stopped and
reported as not converged. The PLM paper's own protocol is close to this map but not equal to
it (a fixed n = 10 steps read at step n, a zero field giving 0, the authors' flip count): it is
the ``paper_synchronous`` dynamics.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._ising_kernels import ising_couplings, tie_tolerance
from amsweep.pipeline.model import Model, Param, Relaxation

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(
        100, int, "budget of parallel steps per state (stops early at a fixed point or a 2-cycle)", low=1
    ),
}


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Iterate the parallel map on the still-moving states, one GEMM per step."""
    J = ising_couplings(model, "synchronous")
    S = np.array(states, dtype=np.int8, order="C", copy=True)
    if S.ndim != 2 or S.shape[1] != J.shape[0]:
        raise ValueError(f"states must be (B, {J.shape[0]}), got {S.shape}")
    B = S.shape[0]
    JT = np.ascontiguousarray(J.T)
    tol = tie_tolerance(J)
    converged = np.zeros(B, dtype=np.bool_)
    sweeps = np.zeros(B, dtype=np.int32)
    active = np.arange(B)
    before = None  # states one step before the current ones (for 2-cycle detection)
    for step in range(1, int(params["max_sweeps"]) + 1):
        cur = S[active]
        H = cur.astype(np.float32) @ JT
        new = np.where(H > tol, 1, np.where(H < -tol, -1, cur)).astype(np.int8)
        still = np.any(new != cur, axis=1)
        cycle = np.zeros_like(still) if before is None else still & np.all(new == before, axis=1)
        S[active] = new
        sweeps[active] = step
        converged[active[~still]] = True
        keep = still & ~cycle
        before = cur[keep]
        active = active[keep]
        if active.size == 0:
            break
    return Relaxation(final=S, converged=converged, sweeps=sweeps)
