"""Zero-temperature asynchronous retrieval: the standard Hopfield dynamics.

Random sequential updates s_i <- sign(h_i) (ties keep the spin) descend the energy for
symmetric J and end at a fixed point; asymmetric J (PLM) may cycle, hence the sweep
budget and the converged flag.
Potts models (q > 2) are handed to the Potts kernel (s_i <- argmax_a h_i(a)).
``relax_groups`` relaxes several batches (a cell's fixed-point check, its starts at every noise
level, its random starts) in one kernel call: ~17 us of Python and numba dispatch per call was
~0.4 ms of a ~1.6 ms small cell (N = 32, ten calls; benchmarks/small_cell.py).
"""

from __future__ import annotations

import numpy as np

from typing import Sequence

from amsweep.pipeline.dynamics._ising_kernels import (
    SEED_HIGH,
    ising_couplings,
    prepare,
    relax_zero_t,
    relax_zero_t_budgets,
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


def _draws_concatenate() -> bool:
    """Whether per-group seed draws equal one draw of them all: numpy draws seeds below 2^32 as
    a stream of 32-bit words (the generator keeps the unused half of a 64-bit output), so they
    do, and one draw is ~5 us instead of ~5 us per group; checked here for this numpy."""
    sizes = (3, 0, 5, 8, 1)
    for seed in range(4):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        apart = np.concatenate([a.integers(0, SEED_HIGH, size=(n,), dtype=np.int64) for n in sizes])
        if apart.tolist() != b.integers(0, SEED_HIGH, size=(sum(sizes),), dtype=np.int64).tolist():
            return False
        if a.random() != b.random():
            return False
    return True


_ONE_DRAW = _draws_concatenate()


def relax_groups(model: Model, groups: Sequence[tuple[np.ndarray, dict]], rng: np.random.Generator) -> list[Relaxation]:
    """``[relax(model, states, params, rng) for states, params in groups]`` bit for bit, in one kernel call.

    The same seeds are drawn from ``rng`` in the same order (``_draws_concatenate``), each
    group's fields are the same GEMM (same shapes, same operands) as ``relax`` makes for that group
    alone, and a state's trajectory depends only on its seed, its fields and its group's
    ``max_sweeps``, so concatenating the groups changes no value.
    """
    if model.q > 2 or not groups:
        return [relax(model, states, params, rng) for states, params in groups]
    J = ising_couplings(model, "asynchronous")
    sizes = [states.shape[0] for states, _ in groups]
    S = np.concatenate([np.asarray(states, dtype=np.int8) for states, _ in groups])
    if S.ndim != 2 or S.shape[1] != J.shape[0]:
        raise ValueError(f"states must be (B, {J.shape[0]}), got {S.shape}")
    Sf, H = S.astype(np.float32), np.empty(S.shape, np.float32)
    a = 0
    for b in sizes:  # each group's product alone, as ``relax`` makes it
        np.matmul(Sf[a : a + b], J.T, out=H[a : a + b])
        a += b
    if _ONE_DRAW:
        seeds = rng.integers(0, SEED_HIGH, size=(S.shape[0],), dtype=np.int64)
    else:
        seeds = np.concatenate([rng.integers(0, SEED_HIGH, size=(b,), dtype=np.int64) for b in sizes])
    budgets = np.repeat(np.array([int(params["max_sweeps"]) for _, params in groups], dtype=np.int64), sizes)
    converged = np.zeros(S.shape[0], dtype=np.bool_)
    sweeps = np.zeros(S.shape[0], dtype=np.int32)
    relax_zero_t_budgets(S, H, np.ascontiguousarray(J.T), tie_tolerance(J), seeds, budgets, converged, sweeps)
    out, a = [], 0
    for b in sizes:
        out.append(Relaxation(final=S[a : a + b], converged=converged[a : a + b], sweeps=sweeps[a : a + b]))
        a += b
    return out
