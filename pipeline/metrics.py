"""What a cell measures: how every metric is computed, with the quantities it uses.

A metric is declared in ``metric_table.METRICS`` (what storage and analysis read about it: dims,
dtype, description, label, units, whether every done task has a value) and computed by the entry
of the same name in ``COMPUTE`` here; adding a metric is one entry in each (a name in one and not
the other stops the import). The declarations are apart so that storage reads them without
importing these formulas and the kernels they reach (metric_table's docstring).
Metrics are grouped by what the cell must prepare for them:
``TRAIN`` and ``TEST`` (training or test examples corrupted at each noise level, relaxed: one
value per noise level; TEST is NaN without test examples), ``RANDOM`` (random states relaxed
once), ``CELL`` (once per cell from data and model), ``BASINS`` (the bisection basin 2 k*/N of
each probed example) and ``TIMINGS`` (wall times, not deterministic).

Functions are batched (rows are states) and alphabet-aware: Ising +-1 (q == 2) or Potts 0..q-1
(q > 2). Overlaps of a thermal dynamics (TAP, Glauber) are thermal overlaps (1/N) sum_i xi_i <s_i>
of the relaxation's ``magnetisation`` (``thermal_state``), which the replica-symmetric theory
predicts (docs/science.md#metrics); the binarised read-out sign(<s_i>) (``final``) decides
``success_train``. For zero-temperature dynamics the two are the same states.
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Any, Callable

import numpy as np

from amsweep.pipeline import potts
from amsweep.pipeline.dynamics._state_kernels import (
    EXACT_SITES,
    count_at_least,
    equal_rows,
    flip_smallest,
    int_best_overlaps,
    int_overlaps,
)
from amsweep.pipeline.memory_metrics import MEMORY_COMPUTE
from amsweep.pipeline.metric_table import METRICS, RETRIEVED_OVERLAP, SUCCESS_OVERLAP, check_declared
from amsweep.pipeline.metric_types import (
    BASINS,
    CELL,
    GROUPS,
    PER_NOISE,
    RANDOM,
    TEST,
    TIMINGS,
    TRAIN,
    CellInputs,
    Metric,
    Starts,
    Timings,
    thermal_state,
)

__all__ = [
    "BASINS",
    "CELL",
    "GROUPS",
    "METRICS",
    "PER_NOISE",
    "RANDOM",
    "RETRIEVED_OVERLAP",
    "SUCCESS_OVERLAP",
    "TEST",
    "TIMINGS",
    "TRAIN",
    "CellInputs",
    "COMPUTE",
    "Metric",
    "Starts",
    "Timings",
    "best_abs_overlap",
    "best_overlap",
    "check_declared",
    "corrupt",
    "cosine_similarity",
    "evaluate",
    "mean_or_nan",
    "overlap",
    "overlap_matrix",
    "plan",
    "Plan",
    "random_states",
    "result_values",
    "solved_mean",
    "thermal_state",
    "undefined",
    "unsolved_rows",
]


def overlap(a: np.ndarray, b: np.ndarray, q: int = 2) -> np.ndarray:
    """Row-wise overlap of two (B, N) state arrays: (1/N) a.b for Ising, (q f - 1)/(q - 1) for Potts."""
    if q == 2:
        if _exact_ints(a, b) and a.shape == b.shape:
            return int_overlaps(a, b)  # the same values in one call (dynamics/_state_kernels.py)
        return np.einsum("ij,ij->i", a.astype(np.float32), b.astype(np.float32)) / a.shape[1]
    return potts.overlap(a, b, q)


# Up to this many products the kernel's plain integer loop beats the float32 GEMM and its array
# conversions (measured: 1.8 against 11 us at 32 x 3 x 32, 10 against 18.5 at 64 x 16 x 32, even at
# 2^15, 10.6 against 9.3 at 32 x 32 x 64; at 100 x 100 x 64 the GEMM is 3.4x faster).
BEST_KERNEL_WORK = 2**15


def _exact_ints(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the integer kernels give the float32 path's overlaps of a and b bit for bit."""
    return a.dtype == np.int8 and b.dtype == np.int8 and a.ndim == b.ndim == 2 and 0 < a.shape[1] <= EXACT_SITES


def overlap_matrix(a: np.ndarray, b: np.ndarray, q: int = 2) -> np.ndarray:
    """All pairwise overlaps (B, K) as one matrix product (one-hot for Potts)."""
    N = a.shape[1]
    if q == 2:
        return (a.astype(np.float32) @ b.astype(np.float32).T) / N
    ea, eb = potts.one_hot(a, q), potts.one_hot(b, q)
    f = (ea @ eb.T) / N
    return (q * f - 1.0) / (q - 1.0)


# Up to this many flips per row, ``flip_smallest``'s insertion pass (O(N k)) beats a full argsort
# (measured: 4.2 against 29.9 us at 32 x 32, k = 9; 340 against 422 at 100 x 200, k = 20; but
# 306 against 174 at 100 x 100, k = 30). Both flip the same sites.
FLIP_KERNEL_MAX = 16


def corrupt(
    X: np.ndarray, rho: float, q: int, rng: np.random.Generator, flip_count: Callable[[int, float], int] | None = None
) -> np.ndarray:
    """Copy of X with exactly floor(rho N) sites of each row changed (Potts: to another state).

    Exactly, not on average: the initial overlap is then the same 1 - 2 rho for every start,
    which is what the noise axis of a phase diagram means. ``flip_count(N, rho)`` replaces
    floor(rho N) for a protocol that counts its flips otherwise (Ising; the sites are drawn
    from the same stream, the first k of the same random order).
    """
    if q > 2:
        return potts.corrupt(X, rho, q, rng)
    B, N = X.shape
    k = flip_count(N, rho) if flip_count is not None else math.floor(rho * N + potts.FLOOR_EPS)
    out = X.copy()
    if k == 0 or B == 0:
        return out
    draws = rng.random((B, N))
    if k <= FLIP_KERNEL_MAX:  # the sites of the k smallest draws of each row, in one pass
        flip_smallest(out, draws, min(k, N))
        return out
    sites = np.argsort(draws, axis=1)[:, :k]
    sites += np.arange(0, B * N, N)[:, None]  # flat indices: one take and one put, not 2-D fancy indexing
    flat = out.reshape(-1)  # a view: out is a fresh C-contiguous copy
    flat[sites] = -flat[sites]
    return out


def random_states(B: int, N: int, q: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random states in the data's alphabet."""
    if q == 2:
        return np.where(rng.random((B, N)) < 0.5, 1, -1).astype(np.int8)
    return rng.integers(0, q, size=(B, N)).astype(np.int8)


def best_overlap(states: np.ndarray, examples: np.ndarray, q: int = 2) -> np.ndarray:
    """Per state, the largest overlap with any example (NaN where there are no examples)."""
    if examples.shape[0] == 0:
        return np.full(states.shape[0], np.nan, dtype=np.float32)
    if (
        q == 2
        and _exact_ints(states, examples)
        and states.shape[1] == examples.shape[1]
        and states.size * len(examples) <= BEST_KERNEL_WORK
    ):
        return int_best_overlaps(states, examples)
    return np.maximum.reduce(overlap_matrix(states, examples, q), axis=1)


def best_abs_overlap(states: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Largest |overlap| with any example: a feature and its negation are the same direction."""
    return np.maximum.reduce(np.abs(overlap_matrix(states, examples, 2)), axis=1)


def cosine_similarity(A: np.ndarray, B: np.ndarray) -> float:
    """Cosine between two coupling tensors viewed as vectors (scale-free: PLM's |J| grows)."""
    a, b = A.ravel().astype(np.float64), B.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def mean_or_nan(x: np.ndarray) -> float:
    """Mean of a possibly empty array without numpy's empty-slice warning.

    The value of ``np.mean``: a count for bool input (its float64 sum), one ``add.reduce`` (in float64
    for integer input), divided
    by the count in float64 and rounded back to the sum's type (what np.mean's division by an
    ``intp`` count and its cast back do), so bit-identical. Python's float division of the sum
    does that without numpy scalar arithmetic: 1-2 us instead of 8 (np.mean) or 3.5-6.5 (the
    numpy-scalar version of this function), and a small cell takes ~35 means.
    """
    x = np.asarray(x)
    n = x.size
    if not n:
        return math.nan
    if x.dtype == np.bool_:  # the same count, ~0.3 us instead of ~1.2
        return np.count_nonzero(x) / n
    if x.dtype.kind in "biu":
        return float(np.add.reduce(x, None, np.float64)) / n
    total = np.add.reduce(x, None)
    return float(total.dtype.type(float(total) / n))


def unsolved_rows(state: np.ndarray) -> np.ndarray:
    """(B,) bool: starts without a thermal state. A thermal dynamics whose equations have no
    solution from a start (``tap_correlated`` with its response cap still active) returns a NaN
    magnetisation row for it; states of every other dynamics are finite (ints: no check)."""
    if state.dtype.kind != "f":
        return np.zeros(state.shape[0], dtype=bool)
    return np.isnan(state).any(axis=1)


def solved_mean(values: np.ndarray, state: np.ndarray) -> float:
    """Mean of per-start values over the starts that have a thermal state (``unsolved_rows``).

    Where every start has one (every dynamics but a capped adaptive TAP) this is ``mean_or_nan``
    of the same array, bit for bit; a start without a solution is counted by
    ``no_solution_train``, never averaged as if its last iterate were a state.
    """
    unsolved = unsolved_rows(state)
    return mean_or_nan(values[~unsolved] if unsolved.any() else values)


# ---- what each group of metrics is computed from -------------------------------------------------


def _cached(s: Starts, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()`` once per batch of starts: several formulas read the same array."""
    got = s.cache.get(key)
    if got is None:
        got = s.cache[key] = compute()
    return got


def _unsolved(s: Starts) -> np.ndarray:
    return _cached(s, "unsolved", lambda: unsolved_rows(s.state))


def _solved_mean(values: np.ndarray, s: Starts) -> float:
    """``solved_mean(values, s.state)`` with the unsolved rows computed once per batch."""
    if s.state.dtype.kind != "f":  # integer states are all solved (unsolved_rows)
        return mean_or_nan(values)
    unsolved = _unsolved(s)
    return mean_or_nan(values[~unsolved] if unsolved.any() else values)


def _origin_overlaps(s: Starts) -> np.ndarray:
    return _cached(s, "origin", lambda: overlap(s.state, s.examples, s.data.q))


def _final_overlaps(s: Starts) -> np.ndarray:
    """Overlaps of the binarised states: the same array as ``_origin_overlaps`` where the state
    is the final state itself (every zero-temperature dynamics: ``thermal_state``)."""
    if s.relaxation.magnetisation is None:
        return _origin_overlaps(s)
    return _cached(s, "final", lambda: overlap(s.relaxation.final, s.examples, s.data.q))


def _overlap_with_origin(s: Starts) -> float:
    return _solved_mean(_origin_overlaps(s), s)


def _retrieved(s: Starts) -> float:
    """Judged on the binarised state: sign(<s_i>) for thermal dynamics."""
    return _fraction_at_least(_final_overlaps(s), SUCCESS_OVERLAP)


def _retrieved_fraction(s: Starts) -> float:
    """Judged on the binarised state, like ``success_train``, at the looser cut RETRIEVED_OVERLAP."""
    return _fraction_at_least(_final_overlaps(s), RETRIEVED_OVERLAP)


def _fraction_at_least(overlaps: np.ndarray, cut: float) -> float:
    """``mean_or_nan(overlaps >= cut)`` (numpy compares float32 with the cut cast to float32) in one call."""
    if overlaps.dtype != np.float32 or overlaps.ndim != 1:
        return mean_or_nan(overlaps >= cut)
    return count_at_least(overlaps, cut) / overlaps.size if overlaps.size else math.nan


def _converged(s: Starts) -> float:
    return mean_or_nan(s.relaxation.converged)


def _best_train(s: Starts) -> float:
    return _solved_mean(best_overlap(s.state, s.data.train, s.data.q), s)


def _best_test(s: Starts) -> float:
    return _solved_mean(best_overlap(s.state, s.data.test, s.data.q), s)


def _best_feature(s: Starts) -> float:
    features = s.data.meta.get("features")
    if features is None or len(features) == 0:  # no hidden features (e.g. correlated at depth 0)
        return math.nan
    return _solved_mean(best_abs_overlap(s.state, features), s)


def _no_solution(s: Starts) -> float:
    return mean_or_nan(_unsolved(s))


def _fixed_points(c: CellInputs) -> float:
    a, b = c.after_one_sweep, c.data.train
    if a.dtype == b.dtype == np.int8 and a.shape == b.shape and a.ndim == 2 and a.shape[0]:
        return equal_rows(a, b) / a.shape[0]  # mean_or_nan's value: count / P, correctly rounded
    return mean_or_nan(np.all(a == b, axis=1))  # np.mean's value (P > 0)


def _coupling_similarity(c: CellInputs) -> float:
    true_J = c.data.meta.get("true_J")
    return math.nan if true_J is None or c.model.J is None else cosine_similarity(c.model.J, true_J)


def _basin_mean(basin: np.ndarray) -> float:
    return float(basin.mean()) if basin.size else math.nan


def _basin_quantile(p: float) -> Callable[[np.ndarray], float]:
    return lambda basin: float(np.quantile(basin, p)) if basin.size else math.nan


# How each metric of ``metric_table.METRICS`` is computed from its group's inputs, under the
# name it is declared with (checked at import, below).
COMPUTE: dict[str, Callable[[Any], float]] = {
    "fixed_point_fraction": _fixed_points,
    "m_train": _overlap_with_origin,
    "success_train": _retrieved,
    "converged_train": _converged,
    "m_test": _overlap_with_origin,
    "converged_test": _converged,
    "test_best_train": _best_train,
    "test_best_feature": _best_feature,
    "random_best_train": _best_train,
    "random_best_test": _best_test,
    "random_converged": _converged,
    "coupling_similarity": _coupling_similarity,
    "basin_mean": _basin_mean,
    "basin_q10": _basin_quantile(0.1),
    "basin_q50": _basin_quantile(0.5),
    "basin_q90": _basin_quantile(0.9),
    **MEMORY_COMPUTE,
    "train_seconds": attrgetter("train"),
    "retrieval_seconds": attrgetter("retrieval"),
    "basin_seconds": attrgetter("basins"),
    "no_solution_train": _no_solution,
    "retrieved_fraction": _retrieved_fraction,
}
_unmatched = sorted(METRICS.keys() ^ COMPUTE.keys())
if _unmatched:  # a declaration without a formula, or a formula without a declaration
    raise RuntimeError(f"metrics {_unmatched}: declared in metric_table.py or computed here, not both")


Plan = dict[str, list[tuple[str, Callable[[Any], float]]]]


def plan() -> Plan:
    """Each group's (name, formula) pairs as METRICS holds them now, in table order: a cell reads
    the table once instead of once per group and noise level (~12 passes over ~30 entries)."""
    out: Plan = {group: [] for group in GROUPS}
    for name, m in METRICS.items():
        out[m.group].append((name, COMPUTE[name]))
    return out


def evaluate(group: str, inputs: Any, metrics: Plan | None = None) -> dict[str, float]:
    """Every metric of ``group`` (as METRICS holds it now, or as ``metrics`` read it) from that group's inputs."""
    return {name: compute(inputs) for name, compute in (metrics or plan())[group]}


def undefined(group: str, metrics: Plan | None = None) -> dict[str, float]:
    """NaN for every metric of ``group``: its starts do not exist (no test examples)."""
    return {name: math.nan for name, _ in (metrics or plan())[group]}


def result_values(scalars: dict[str, float], series: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """A cell's values in their declared dtypes (one per noise level for per-noise metrics)."""
    check_declared(scalars.keys() | series.keys())
    per_noise = [name for name, m in METRICS.items() if m.group in PER_NOISE]
    once = [name for name, m in METRICS.items() if m.group not in PER_NOISE]
    if all(m.dtype is np.float32 for m in METRICS.values()) and len({len(v) for v in series.values()}) <= 1:
        # one conversion for each kind (~12 us of a ~0.8 ms small cell less): the same float32 roundings
        values: dict[str, Any] = dict(zip(per_noise, np.array([series[n] for n in per_noise], dtype=np.float32)))
        values.update(zip(once, np.array([scalars[n] for n in once], dtype=np.float32)))
        return values
    values = {name: np.asarray(series[name], dtype=METRICS[name].dtype) for name in per_noise}
    values.update({name: METRICS[name].dtype(scalars[name]) for name in once})
    return values
