"""The PLM paper's retrieval protocol: n synchronous zero-temperature steps, overlap read at step n.

The authors' published code (Francill99/PseudoLikelihood_Analysis, ``TwoBodiesModel.dyn_step``
with d = 1 and ``on_sphere``) evaluates every rule with the parallel map

    s_i(t+1) = h_i / (|h_i| + 1e-9),   h_i = sum_{j != i} J_ij s_j(t)   (J_ii is zeroed first),

i.e. s_i <- sign(h_i) for all sites at once, with a zero field mapped to s_i = 0 (a site with
no field drops out of the next step's fields). It runs a fixed number n of steps (default and
notebooks: n = 10) and reads the overlap at step n whether the state has converged or not.
Cues have ``int(N * ((1 - m0) / 2.))`` sites flipped for an initial overlap m0: ``flip_count``
evaluates that expression at m0 = 1 - 2 rho, so the same noise axis serves both protocols.

Why a separate dynamics and not ``synchronous`` with options: the two differ in three ways that
all change results (no early stop at a 2-cycle, whose state at step n depends on the parity of
n; zero fields give 0, not the old spin; one flip fewer where the authors' float expression
truncates), and existing cubes that use ``synchronous`` keep their canonical parameters.

Float ties: the authors' 1e-9 is an absolute threshold on float32 fields; here a field counts as
zero when |h_i| <= TIE_RTOL sum_j |J_ij| (``tie_tolerance``), the threshold every other amsweep
dynamics uses, so that an exact tie of Hebb couplings (h a multiple of 1/N) is recognised
whatever the GEMM's summation order. The parameter keeps the name ``max_sweeps`` of every other
dynamics because the cell tests fixed points by running one step (``max_sweeps = 1``).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._ising_kernels import ising_couplings, tie_tolerance
from amsweep.pipeline.model import Model, Param, Relaxation

PARAMS: dict[str, Param] = {
    "max_sweeps": Param(
        10,
        int,
        "n, the fixed number of parallel steps; the state (and overlap) is read "
        "at step n, converged or not (the authors' default and notebooks: 10)",
        low=1,
    ),
}


def flip_count(N: int, rho: float) -> int:
    """Sites the authors flip for initial overlap m0 = 1 - 2 rho: int(N (1 - m0) / 2), in float64.

    It equals floor(rho N) except where 1 - m0 rounds below 2 rho: one flip fewer at rho = 0.04,
    0.05 and 0.1 for N = 200 ... 1000 (e.g. N = 200, rho = 0.05: 1 - 0.9 = 0.0999..., 9 flips).
    """
    m0 = 1.0 - 2.0 * float(rho)
    return int(N * ((1.0 - m0) / 2.0))


def step(J: np.ndarray, S: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """One parallel step s <- sign(J s), zero field -> 0 (states int8 in {-1, 0, +1})."""
    H = S.astype(np.float32) @ J.T
    return (np.where(H > tol, 1, 0) - np.where(H < -tol, 1, 0)).astype(np.int8)


def relax(model: Model, states: np.ndarray, params: dict, rng: np.random.Generator) -> Relaxation:
    """Run exactly n parallel steps from each state; a state that stops moving is frozen early
    (the map would leave it unchanged), which changes no result. ``converged``: some step within
    the n left the state unchanged (a fixed point); ``sweeps``: that step, else n."""
    J = ising_couplings(model, "paper_synchronous")
    S = np.array(states, dtype=np.int8, order="C", copy=True)
    if S.ndim != 2 or S.shape[1] != J.shape[0]:
        raise ValueError(f"states must be (B, {J.shape[0]}), got {S.shape}")
    J = J.copy()
    np.fill_diagonal(J, 0.0)  # the authors zero J_ii before every step
    tol = tie_tolerance(J)
    n = int(params["max_sweeps"])
    B = S.shape[0]
    converged = np.zeros(B, dtype=np.bool_)
    sweeps = np.full(B, n, dtype=np.int32)
    active = np.arange(B)
    for t in range(1, n + 1):
        cur = S[active]
        new = step(J, cur, tol)
        moved = np.any(new != cur, axis=1)
        S[active] = new
        stopped = active[~moved]
        converged[stopped] = True
        sweeps[stopped] = t
        active = active[moved]
        if active.size == 0:
            break
    return Relaxation(final=S, converged=converged, sweeps=sweeps)
