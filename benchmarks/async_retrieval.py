"""Asynchronous zero-temperature retrieval versus one B x N x N float32 matrix product.

What is timed: ``amsweep.pipeline.dynamics.asynchronous.relax`` on B = 1000 states at N = 1000, the
whole call (float32 GEMM for the initial fields, contiguous J^T, tie tolerances, then the
numba sweeps with float32 incremental fields) from training patterns of a PLM memory (P = 200,
default parameters) corrupted at exactly floor(rho N) sites, until every state is at a fixed
point (a sweep with no flip) or has used max_sweeps = 100. The baseline is the bare product
S J^T of the same shapes (float32 states, preallocated output). rho = 0 is the
fixed-point check every cell runs; the other rows are retrieval from noise.
Where the time beyond the product goes: ``shuffles`` replays only the random visiting orders the
run drew (each state's generator, one Fisher-Yates shuffle per sweep that found an unstable
site), so relax = setup + shuffles + the sweeps' site tests and field updates (the rest).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from benchmarks._harness import Row, interleaved, ms, random_patterns, ratio_row
from benchmarks._plm_common import params
from amsweep.pipeline import metrics
from amsweep.pipeline.dynamics import asynchronous
from amsweep.pipeline.dynamics._ising_kernels import SEED_HIGH, prepare
from amsweep.pipeline.dynamics._random_order import new_state, shuffle
from amsweep.pipeline.rules import plm

TARGET = 2.0
NOISE = (0.0, 0.05, 0.1, 0.2)


@njit(cache=True)
def _shuffles(seeds: np.ndarray, shuffled: np.ndarray, N: int) -> int:
    """The visiting orders relax_zero_t drew: ``shuffled[b]`` shuffles from state b's seed."""
    order = np.empty(N, np.int32)
    total = 0
    for b in range(seeds.shape[0]):
        rng = new_state(seeds[b])
        for k in range(N):
            order[k] = k
        for _ in range(shuffled[b]):
            shuffle(order, rng)
        total += order[0]
    return total


def run(tiny: bool = False, repeats: int = 5) -> list[Row]:
    N, P, B = (64, 12, 48) if tiny else (1000, 200, 1000)
    X = random_patterns(P, N, seed=5)
    model = plm.train(X, 2, params(), np.random.default_rng(0))
    targets = X[np.arange(B) % P]
    Hbuf = np.empty((B, N), np.float32)
    rows = []
    for rho in NOISE:
        S = metrics.corrupt(targets, rho, 2, np.random.default_rng(6))
        Sf = S.astype(np.float32)
        out = {}

        def retrieve() -> None:
            out["r"] = asynchronous.relax(model, S, {"max_sweeps": 100}, np.random.default_rng(7))

        retrieve()
        r = out["r"]
        seeds = np.random.default_rng(7).integers(0, SEED_HIGH, size=(B,), dtype=np.int64)  # those relax drew
        shuffled = (r.sweeps - r.converged).astype(np.int64)  # the confirming sweep draws no order
        t = interleaved(
            {
                "relax": retrieve,
                "gemm": lambda: np.matmul(Sf, model.J.T, out=Hbuf),
                "setup": lambda: prepare(model.J, S),
                "shuffles": lambda: _shuffles(seeds, shuffled, N),
            },
            repeats,
        )
        rest = [a - b - c for a, b, c in zip(t["relax"], t["setup"], t["shuffles"])]
        overlap = float(np.mean(metrics.overlap(r.final, targets, 2)))
        rows.append(
            ratio_row(
                f"async T = 0 retrieval / 1 SGEMM, B = {B}, N = {N}, rho = {rho:g}",
                t["relax"],
                t["gemm"],
                "<=",
                TARGET,
                f"PLM memory P = {P}; {r.sweeps.mean():.2f} sweeps per state on average (max {r.sweeps.max()}, "
                f"the last one confirms the fixed point), {r.converged.mean():.3f} converged, final overlap "
                f"{overlap:.3f}; relax {ms(t['relax'])} of which setup {ms(t['setup'])}, shuffles "
                f"{ms(t['shuffles'])} ({int(shuffled.sum())} orders of {N} sites), site tests and field updates "
                f"{ms(rest)}; SGEMM {ms(t['gemm'])}",
            )
        )
    return rows
