"""Basin of attraction per training example: by bisection on the number of flipped spins, or by a scan.

A basin read off a noise grid is a lower bound at the grid's resolution, and the grid is paid
for at every level. Here each example's basin is searched directly: the largest number k* of
flipped sites from which the example is still retrieved (at least half of ``trials`` corrupted
copies end at overlap >= ``criterion``: a start succeeds as in ``success_train``, and the
majority places the basin where the example's retrieval probability crosses 1/2, so that the
median over examples estimates the grid's median basin), found by bisection on
k in [0, N // 2] with resolution one site, in ceil(log2(N // 2 + 2)) rounds. Each round relaxes
all examples x trials in one dynamics call. The basin is reported like the grid's,
1 - m_in* = 2 k* / N (docs/science.md#metrics), so the two are directly comparable.

Corruption is *nested*: each (example, trial) draws one random order of its sites once, and k
flips are the first k sites of that order. The start at k + 1 flips is then the start at k with
one more site flipped, so success is monotone in k far more often than with fresh draws
(common random numbers), and ``scan`` tests every k on the very starts the bisection tests.
Where success is not monotone in k, bisection returns *a* boundary: a retrieved k whose k + 1
is not (or k = N // 2). The orders come from a stream keyed by the cell's data coordinates only,
so every rule of a cell is probed from the same starts.

Bisection reads the lower tail low (issue 22). The same starts do not give the same
outcomes: the update order of a stochastic dynamics is drawn afresh at every call, so the
3-trial majority is itself a coin in the transition zone where the retrieval probability p(k)
is between 0 and 1, and a bisection stops at the first failure it meets there and never looks
above it. Against a brute-force scan with independent starts and dynamics (Hebb, asynchronous,
N = 100, alpha = 0.08, 30 pattern sets; ``python -m amsweep.analysis.basin_methods --N 100
--brute 8 --sets 30 --trials 3,9``): the 10% quantile 0.081 +- 0.015 low, the mean and median
within 0.005. Against the scan on cells of random_basins_laptop (PLM, N = 200, alpha = 0.1-0.4,
both protocols): the 10% quantile 0.012-0.034 low, mean and median within 0.011. The issue
saw the mean 0.017 low; here the mean's offset is not consistent in sign (docs/experiments.md).

``basin_method = "scan"`` is an unbiased estimator: every k in 1..N // 2 is tested with
``basin_trials`` starts of its own (fresh sites, fresh dynamics), and the example's basin is
k^ = sum_k (retrieved starts at k) / trials, whose expectation is exactly sum_k p(k) for any
number of trials: the area under the example's retrieval probability, which is the crossing
k* for a step and the crossing of p through 1/2 for any transition symmetric about it. Nothing
stops at a first failure, and there is no majority (a majority of T trials has expectation
sum_k P_T(p(k)), which depends on T wherever p lingers away from 1/2, e.g. near capacity). Its spread over
repeated draws, sqrt(sum_k p(1 - p) / trials), about one flip at 3 trials, widens the spread
of basins between examples a little: at the point above the scan's mean is off by -0.001 +-
0.002 and its 10% quantile by -0.007 +- 0.008 at 3 trials (0.000 +- 0.001 and +0.004 +- 0.008
at 9). It costs N // 2 relaxation rounds instead of ceil(log2(N // 2 + 2)) (fewer when an
example's scan stops, see ``scan_basin``): 0.5-17 times the bisection's time, 0.02-1.3 s a cell
at N = 200 (docs/experiments.md). The default stays "bisect", so cubes made before keep meaning
what they meant; "scan" is recorded in the spec's canonical form (and hash), "bisect" is not.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from amsweep.pipeline.basin_options import METHODS, PARAMS, canonical_retrieval
from amsweep.pipeline.metrics import overlap
from amsweep.pipeline.spec import RetrievalOptions


__all__ = [
    "bisect",
    "canonical_retrieval",
    "cell_basins",
    "nested_corruptions",
    "PARAMS",
    "Relax",
    "METHODS",
    "retrieved",
    "scan",
    "SCAN_BLOCK",
    "scan_basin",
    "starts",
]

Relax = Callable[[np.ndarray], np.ndarray]  # initial states (B, N) -> final states (B, N)


def nested_corruptions(X: np.ndarray, trials: int, q: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per (example, trial): the rank of each site in its flip order, and the Potts shift.

    ``rank[e, t, i] < k`` says whether site i is changed in the k-flip start of (e, t).
    Potts sites change to (x + shift) mod q, shift uniform in 1..q-1 (a uniform other state).
    """
    E, N = X.shape
    order = np.argsort(rng.random((E, trials, N)), axis=2)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(N)[None, None, :], axis=2)
    shift = rng.integers(1, q, size=(E, trials, N)) if q > 2 else np.ones((E, trials, N), np.int64)
    return rank.astype(np.int32), shift.astype(np.int16)


def starts(X: np.ndarray, k: np.ndarray, rank: np.ndarray, shift: np.ndarray, q: int) -> np.ndarray:
    """(E * trials, N) starts: example e with its first k[e] sites (of each trial's order) changed."""
    E, T, N = rank.shape
    change = rank < k[:, None, None]
    base = np.broadcast_to(X[:, None, :], (E, T, N))
    if q == 2:
        out = np.where(change, -base, base)
    else:
        out = np.where(change, (base.astype(np.int16) + shift) % q, base)
    return out.astype(np.int8).reshape(E * T, N)


def retrieved(final: np.ndarray, X: np.ndarray, trials: int, criterion: float, q: int) -> np.ndarray:
    """Per example: at least half of its trials end at overlap >= criterion.

    Not the mean overlap over trials (the grid's m_train criterion): one failed trial out of
    three pulls a mean below 0.99, which would place the basin where the *first* of three trials
    fails, 0.05 below the grid's median basin on random patterns at N = 200.
    """
    E, N = X.shape
    m = overlap(final, np.repeat(X, trials, axis=0), q).reshape(E, trials)
    return 2 * np.count_nonzero(m >= criterion, axis=1) >= trials


def bisect(X: np.ndarray, relax: Relax, trials: int, criterion: float, q: int, rng: np.random.Generator) -> np.ndarray:
    """Largest retrieved flip count k* per example (0 when even the clean example is lost).

    Invariant: lo retrieved (lo = -1 stands for "none yet"), hi not (hi = K + 1 stands for
    "beyond the range"); every round tests mid = (lo + hi) // 2 for all unfinished examples.
    """
    E, N = X.shape
    K = N // 2
    rank, shift = nested_corruptions(X, trials, q, rng)
    lo, hi = np.full(E, -1), np.full(E, K + 1)
    while True:
        todo = np.flatnonzero(hi - lo > 1)
        if todo.size == 0:
            break
        mid = (lo[todo] + hi[todo]) // 2
        S = starts(X[todo], mid, rank[todo], shift[todo], q)
        ok = retrieved(relax(S), X[todo], trials, criterion, q)
        lo[todo] = np.where(ok, mid, lo[todo])
        hi[todo] = np.where(ok, hi[todo], mid)
    return np.maximum(lo, 0)


def scan(X: np.ndarray, relax: Relax, trials: int, criterion: float, q: int, rng: np.random.Generator) -> np.ndarray:
    """(E, K + 1) success table over every flip count 0..K, from the same starts as ``bisect``
    with the same ``rng`` state (a brute-force check; K + 1 times the cost of one round)."""
    E, N = X.shape
    K = N // 2
    rank, shift = nested_corruptions(X, trials, q, rng)
    table = np.zeros((E, K + 1), dtype=bool)
    for k in range(K + 1):
        S = starts(X, np.full(E, k), rank, shift, q)
        table[:, k] = retrieved(relax(S), X, trials, criterion, q)
    return table


SCAN_BLOCK = 8  # flip counts per dynamics call, and the run of all-failed counts that ends a scan


def scan_basin(
    X: np.ndarray, relax: Relax, trials: int, criterion: float, q: int, rng: np.random.Generator
) -> np.ndarray:
    """Per example, the sum over flip counts k = 1, 2, ... of the fraction of its ``trials``
    fresh starts at k that are retrieved (the unbiased estimator above; 0 when none is).

    Flip counts go in blocks of SCAN_BLOCK, all examples still scanned in one dynamics call per
    block; each k draws its own sites, so outcomes at different k are independent. An example
    stops after a block that leaves SCAN_BLOCK consecutive k with no start retrieved, or at
    N // 2: past its basin every start is lost and relaxes slowly, and a full scan of a lost
    pattern would cost N // 2 rounds for nothing. What the stop leaves out is the retrieval
    probability beyond a run where 8 x trials starts all failed (p <~ 0.1 there): against the
    full scan on 9 cells of random_basins_laptop, cell means within +-0.0003 (per cell at most
    0.002, the scan's own noise), and lost patterns cost 0.02-1.3 s a cell instead of 2-6 s.
    """
    E, N = X.shape
    K = N // 2
    hits = np.zeros(E, dtype=np.int64)
    dry = np.zeros(E, dtype=np.int64)  # consecutive flip counts without a retrieved start
    active = np.arange(E)
    for first in range(1, K + 1, SCAN_BLOCK):
        ks = np.arange(first, min(first + SCAN_BLOCK, K + 1))
        Xa = X[active]
        S = np.concatenate(
            [starts(Xa, np.full(len(active), k), *nested_corruptions(Xa, trials, q, rng), q) for k in ks]
        )
        m = overlap(relax(S), np.tile(np.repeat(Xa, trials, axis=0), (ks.size, 1)), q)
        ok = np.count_nonzero((m >= criterion).reshape(ks.size, len(active), trials), axis=2)  # (k, example)
        hits[active] += ok.sum(axis=0)
        for row in ok:
            dry[active] = np.where(row > 0, 0, dry[active] + 1)
        active = active[dry[active] < SCAN_BLOCK]
        if active.size == 0:
            break
    return hits / trials


def cell_basins(
    X: np.ndarray, relax: Relax, retrieval: RetrievalOptions, q: int, rng: np.random.Generator
) -> np.ndarray:
    """The basin 2 k*/N of each of the first ``basin_examples`` training examples (empty when the
    spec leaves the basins off), by ``basin_method``; the basin metrics of ``pipeline/metrics.py``
    summarise it."""
    n = int(retrieval.basin_examples)
    X = X[:n]
    if n == 0:
        return np.zeros(0)
    method = scan_basin if retrieval.basin_method == "scan" else bisect
    k = method(X, relax, int(retrieval.basin_trials), float(retrieval.basin_criterion), q, rng)
    return 2.0 * k / X.shape[1]
