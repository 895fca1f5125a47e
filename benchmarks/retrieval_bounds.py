"""Why asynchronous retrieval at rho 0.2 stays above 2 SGEMM here: what one field update costs, and
what a block-shared visiting order would save (issue 26, third pass).

Per-flip cost: the product's own ``_flip`` (s_i <- -s_i, h += 2 s_i J^T[i], N = 1000 floats)
applied to one state's fields (4 KB, in L1 as in the kernel) with the rows drawn at random from
the first 4 rows of J^T (16 KB: L1), the first 256 (1 MB: L2) or all 1000 (the 4 MB J^T, twice
one core's L2 on the host of RESULTS). A site's flips alternate in sign, so the fields stay
bounded. The figure is thread CPU time per flip; times the flips of the rho 0.2 run it is what
the updates alone would cost that run with every row at that cache level.

Shared order: ``relax_shared_order`` below on the data of ``async_retrieval`` (PLM memory,
B = N = 1000, P = 200, rho 0.2, the same seeds), its kernel CPU time against ``relax_zero_t``'s,
contenders alternated; setup (``prepare`` + tie tolerances + seeds) and one SGEMM are timed in
the same repeats, so each detail also gives the whole relaxation against one SGEMM as
``async_retrieval`` counts it. The G = 1 row checks that the variant is today's dynamics:
every state, field, sweep count and verdict equal.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
from numba import njit

from benchmarks._harness import Row, ms, random_patterns, ratio_row
from benchmarks._plm_common import params
from amsweep.pipeline import metrics
from amsweep.pipeline.dynamics._ising_kernels import (
    SEED_HIGH,
    _any_unstable,
    _flip,
    _refresh,
    prepare,
    relax_zero_t,
    tie_tolerance,
)
from amsweep.pipeline.dynamics._random_order import new_state, shuffle
from amsweep.pipeline.rules import plm

RHO = 0.2
MAX_SWEEPS = 100
BLOCKS = (8, 32, 128)
ROW_SETS = ((4, "in L1"), (256, "in L2"), (1000, "streamed"))


@njit(cache=True)
def relax_shared_order(
    S: np.ndarray,
    H: np.ndarray,
    JT: np.ndarray,
    tol: np.ndarray,
    seeds: np.ndarray,
    max_sweeps: int,
    converged: np.ndarray,
    sweeps: np.ndarray,
    G: int,
) -> int:
    """``relax_zero_t`` with blocks of G consecutive states sharing one visiting order per sweep,
    drawn from the block's first seed; returns the number of flips.

    At each site the row J^T[i] is loaded once for every state of the block that flips there;
    each state's own float32 updates, refreshes and stopping rule are unchanged, only its order
    differs (G = 1 is ``relax_zero_t`` state for state). Measurement only, the product does not
    use it: the kernel takes ~0.65-0.8 of today's at G = 32-128 and the whole relaxation ~0.8,
    far from the ~0.5 that 2 SGEMM needs at rho 0.2, so a stream version (other orders, hence
    other trajectories: a spec change) was not worth it (benchmarks/RESULTS.md, issue 26).
    """
    B, N = S.shape
    order = np.empty(N, np.int32)
    acc = np.empty(N, np.float64)
    active = np.empty(G, np.int64)
    flips = np.zeros(B, np.int64)
    total = 0
    for b0 in range(0, B, G):
        b1 = min(B, b0 + G)
        rng = new_state(seeds[b0])
        for k in range(N):
            order[k] = k
        for b in range(b0, b1):
            converged[b] = False
            sweeps[b] = 0
        for n in range(1, max_sweeps + 1):
            na = 0
            for b in range(b0, b1):
                if converged[b]:
                    continue
                sweeps[b] = n
                if _any_unstable(S[b], H[b], tol):
                    active[na] = b
                    na += 1
                else:
                    converged[b] = True
            if na == 0:
                break
            shuffle(order, rng)
            for k in range(N):
                i = order[k]
                t = tol[i]
                for a in range(na):
                    b = active[a]
                    si = S[b, i]
                    if si * H[b, i] < -t:
                        _flip(S[b], H[b], JT, i, -si)
                        total += 1
                        flips[b] += 1
                        if flips[b] == N:
                            _refresh(S[b], H[b], JT, acc)
                            flips[b] = 0
    return total


@njit(cache=True)
def _updates(s: np.ndarray, h: np.ndarray, JT: np.ndarray, rows: np.ndarray) -> None:
    """The kernel's field update alone: ``_flip`` of site rows[m] of one state, m in order."""
    for m in range(rows.shape[0]):
        i = rows[m]
        _flip(s, h, JT, i, -s[i])


def _cpu_interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each function returns the thread CPU seconds of its timed part; run in turn, order reversed
    every other repeat, after one warm-up each (compilation, first touch)."""
    for fn in fns.values():
        fn()
    names = list(fns)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(fns[name]())
    return out


def _value_row(name: str, values: list[float], detail: str, at_most: float | None = None) -> Row:
    """A row of a measured value (median, min-max over the repeats), against an upper bound if given."""
    med = float(np.median(values))
    met = None if at_most is None else med <= at_most
    return Row(
        name, med, min(values), max(values), len(values), "-" if at_most is None else f"<= {at_most:g}", met, detail
    )


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def run(tiny: bool = False, repeats: int = 5) -> list[Row]:
    N, P, B = (64, 12, 48) if tiny else (1000, 200, 1000)
    X = random_patterns(P, N, seed=5)
    model = plm.train(X, 2, params(), np.random.default_rng(0))
    J = np.asarray(model.J, np.float32)
    targets = X[np.arange(B) % P]
    S0 = metrics.corrupt(targets, RHO, 2, np.random.default_rng(6))
    S_, H_, JT = prepare(J, S0)
    tol = tie_tolerance(J)
    seeds = np.random.default_rng(7).integers(0, SEED_HIGH, size=(B,), dtype=np.int64)  # as relax draws them
    Sf, Hbuf = S0.astype(np.float32), np.empty((B, N), np.float32)
    results: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = {}

    def kernel(G: int) -> float:
        S, H = S_.copy(), H_.copy()
        conv, sw = np.zeros(B, np.bool_), np.zeros(B, np.int32)
        t0 = time.thread_time()
        if G == 0:
            relax_zero_t(S, H, JT, tol, seeds, MAX_SWEEPS, conv, sw)
            flips = -1
        else:
            flips = relax_shared_order(S, H, JT, tol, seeds, MAX_SWEEPS, conv, sw, G)
        dt = time.thread_time() - t0
        results[G] = (S, H, conv, sw, flips)
        return dt

    def setup() -> None:
        prepare(J, S0)
        tie_tolerance(J)
        np.random.default_rng(7).integers(0, SEED_HIGH, size=(B,), dtype=np.int64)

    fns: dict[str, Callable[[], float]] = {"today": lambda: kernel(0)}
    fns.update({f"G{G}": (lambda G=G: kernel(G)) for G in BLOCKS})
    fns["setup"] = lambda: _timed(setup)
    fns["sgemm"] = lambda: _timed(lambda: np.matmul(Sf, J.T, out=Hbuf))
    t = _cpu_interleaved(fns, repeats)

    kernel(1)  # G = 1: today's dynamics, state for state?
    today, one = results[0], results[1]
    same = (one[0] == today[0]).all(1) & (one[1] == today[1]).all(1) & (one[2] == today[2]) & (one[3] == today[3])
    n_flips = max(one[4], 1)

    def whole(name: str) -> list[float]:  # relax as async_retrieval counts it, in SGEMMs
        return [(a + b) / c for a, b, c in zip(t[name], t["setup"], t["sgemm"])]

    def outcome(G: int) -> str:
        S, _, conv, sw, _ = results[G]
        overlap = float(np.mean(metrics.overlap(S, targets, 2)))
        return f"final overlap {overlap:.3f}, {sw.mean():.2f} sweeps per state, {conv.mean():.3f} converged"

    s, h = S_[0].copy(), H_[0].copy()
    picks = {where: np.random.default_rng(n).integers(0, min(n, N), size=n_flips) for n, where in ROW_SETS}
    per_flip = _cpu_interleaved({w: (lambda w=w: _timed(lambda: _updates(s, h, JT, picks[w]))) for w in picks}, repeats)
    sgemm = float(np.median(t["sgemm"]))
    rows = []
    for n_rows, where in ROW_SETS:
        ns = [1e9 * x / n_flips for x in per_flip[where]]
        run_ms = float(np.median(ns)) * n_flips * 1e-6
        rows.append(
            _value_row(
                f"one field update h += 2 s_i J^T[i] (N = {N}), row {where} ({4 * N * min(n_rows, N) // 1000} KB of "
                "rows)",
                ns,
                f"ns per flip (thread CPU time of the product's `_flip`, fields of one state); x the {n_flips} flips "
                f"of the rho {RHO:g} run = {run_ms:.1f} ms = {run_ms * 1e-3 / sgemm:.2f} SGEMM ({ms(sgemm)})",
            )
        )
    rows.append(
        Row(
            f"shared visiting order, G = 1 / `relax_zero_t`: states equal (rho {RHO:g}, B = {B}, N = {N})",
            float(same.mean()),
            float(same.mean()),
            float(same.mean()),
            1,
            ">= 1",
            bool(same.all()),
            f"fraction of states with equal spins, float32 fields, sweeps and verdicts; {n_flips} flips; {outcome(0)}",
        )
    )
    for G in BLOCKS:
        rows.append(
            ratio_row(
                f"shared visiting order, G = {G} / `relax_zero_t`, kernel CPU time (rho {RHO:g}, B = {B}, N = {N})",
                t[f"G{G}"],
                t["today"],
                "<=",
                None,
                f"kernel {ms(t[f'G{G}'])} against {ms(t['today'])}; whole relaxation (setup {ms(t['setup'])} + "
                f"kernel) {np.median(whole(f'G{G}')):.2f} SGEMM against {np.median(whole('today')):.2f} today "
                f"(SGEMM {ms(t['sgemm'])}); {outcome(G)}; {results[G][4]} flips",
            )
        )
    rows.append(
        _value_row(
            f"async T = 0 retrieval (setup + `relax_zero_t`) / 1 SGEMM, CPU time (rho {RHO:g}, B = {B}, N = {N})",
            whole("today"),
            f"setup {ms(t['setup'])}, kernel {ms(t['today'])}, SGEMM {ms(t['sgemm'])}: the shared order's best "
            f"{min(np.median(whole(f'G{G}')) for G in BLOCKS):.2f} SGEMM (rows above)",
            2.0,
        )
    )
    return rows
