"""What a cell measures: every metric declared and computed here, with the quantities it uses.

A metric is one entry of ``METRICS``: how it is computed and from what, and what storage and
analysis read about it (dims, dtype, description, label, units, whether every done task has a
value). The cube template, the integrity check, the cell and the figures all read this table,
so adding a metric is one entry here. Metrics are grouped by what the cell must prepare for them:
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
from typing import Any, Callable, Iterable

import numpy as np

from amsweep.pipeline import potts
from amsweep.pipeline.memory_metrics import MEMORY_METRICS
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
    "random_states",
    "result_values",
    "solved_mean",
    "thermal_state",
    "undefined",
    "unsolved_rows",
]

SUCCESS_OVERLAP = 0.99
# A pattern counts as *retrieved* (``retrieved_fraction``) when its relaxed overlap reaches this.
# Final overlaps from the patterns are bimodal: the retrieval state at 0.97-1.00 (0.967 at Hebb's
# alpha_c in theory) and the lost patterns at 0.2-0.5 (docs/experiments.md, section 9, measured
# histogram); almost nothing lands between 0.6 and 0.9, so any cut in that gap counts the same
# patterns, and 0.9 stays below the retrieval state's overlap at every load where it exists.
# 0.99 (``success_train``) would cut into the retrieval state itself near alpha_c.
RETRIEVED_OVERLAP = 0.9


def overlap(a: np.ndarray, b: np.ndarray, q: int = 2) -> np.ndarray:
    """Row-wise overlap of two (B, N) state arrays: (1/N) a.b for Ising, (q f - 1)/(q - 1) for Potts."""
    if q == 2:
        return np.einsum("ij,ij->i", a.astype(np.float32), b.astype(np.float32)) / a.shape[1]
    return potts.overlap(a, b, q)


def overlap_matrix(a: np.ndarray, b: np.ndarray, q: int = 2) -> np.ndarray:
    """All pairwise overlaps (B, K) as one matrix product (one-hot for Potts)."""
    N = a.shape[1]
    if q == 2:
        return (a.astype(np.float32) @ b.astype(np.float32).T) / N
    ea, eb = potts.one_hot(a, q), potts.one_hot(b, q)
    f = (ea @ eb.T) / N
    return (q * f - 1.0) / (q - 1.0)


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
    k = flip_count(N, rho) if flip_count is not None else int(np.floor(rho * N + potts.FLOOR_EPS))
    out = X.copy()
    if k == 0 or B == 0:
        return out
    sites = np.argsort(rng.random((B, N)), axis=1)[:, :k]
    rows = np.arange(B)[:, None]
    out[rows, sites] = -out[rows, sites]
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
    return overlap_matrix(states, examples, q).max(axis=1)


def best_abs_overlap(states: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Largest |overlap| with any example: a feature and its negation are the same direction."""
    return np.abs(overlap_matrix(states, examples, 2)).max(axis=1)


def cosine_similarity(A: np.ndarray, B: np.ndarray) -> float:
    """Cosine between two coupling tensors viewed as vectors (scale-free: PLM's |J| grows)."""
    a, b = A.ravel().astype(np.float64), B.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def mean_or_nan(x: np.ndarray) -> float:
    """Mean of a possibly empty array without numpy's empty-slice warning.

    The same operations as ``np.mean`` (one ``add.reduce``, in float64 for bool and integer
    input, divided by the count as an ``intp``, cast back to the sum's type), so the values
    are bit-identical; without its Python layers it costs 1.7 us instead of 8 us, and a small
    cell takes ~27 means (~0.15 ms of a ~1.3 ms cell at N = 32).
    """
    x = np.asarray(x)
    if not x.size:
        return float("nan")
    total = np.add.reduce(x, axis=None, dtype=np.float64 if x.dtype.kind in "biu" else None)
    return float(total.dtype.type(total / np.intp(x.size)))


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


def _overlap_with_origin(s: Starts) -> float:
    return solved_mean(overlap(s.state, s.examples, s.data.q), s.state)


def _retrieved(s: Starts) -> float:
    """Judged on the binarised state: sign(<s_i>) for thermal dynamics."""
    return mean_or_nan(overlap(s.relaxation.final, s.examples, s.data.q) >= SUCCESS_OVERLAP)


def _retrieved_fraction(s: Starts) -> float:
    """Judged on the binarised state, like ``success_train``, at the looser cut RETRIEVED_OVERLAP."""
    return mean_or_nan(overlap(s.relaxation.final, s.examples, s.data.q) >= RETRIEVED_OVERLAP)


def _converged(s: Starts) -> float:
    return mean_or_nan(s.relaxation.converged)


def _best_train(s: Starts) -> float:
    return solved_mean(best_overlap(s.state, s.data.train, s.data.q), s.state)


def _best_test(s: Starts) -> float:
    return solved_mean(best_overlap(s.state, s.data.test, s.data.q), s.state)


def _best_feature(s: Starts) -> float:
    features = s.data.meta.get("features")
    if features is None or len(features) == 0:  # no hidden features (e.g. correlated at depth 0)
        return math.nan
    return solved_mean(best_abs_overlap(s.state, features), s.state)


def _no_solution(s: Starts) -> float:
    return mean_or_nan(unsolved_rows(s.state))


def _fixed_points(c: CellInputs) -> float:
    return float(np.mean(np.all(c.after_one_sweep == c.data.train, axis=1)))


def _coupling_similarity(c: CellInputs) -> float:
    true_J = c.data.meta.get("true_J")
    return math.nan if true_J is None or c.model.J is None else cosine_similarity(c.model.J, true_J)


def _basin_mean(basin: np.ndarray) -> float:
    return float(basin.mean()) if basin.size else math.nan


def _basin_quantile(p: float) -> Callable[[np.ndarray], float]:
    return lambda basin: float(np.quantile(basin, p)) if basin.size else math.nan


METRICS: dict[str, Metric] = {
    "fixed_point_fraction": Metric(
        CELL,
        _fixed_points,
        "fraction of training examples that are fixed points of the dynamics",
        "fraction of training examples that are fixed points",
        always=True,
    ),
    "m_train": Metric(
        TRAIN,
        _overlap_with_origin,
        "mean final overlap with the corrupted training example it started from "
        "(thermal dynamics: of the magnetisations <s_i>)",
        r"final overlap from training starts $m_{train}$",
    ),
    "success_train": Metric(
        TRAIN,
        _retrieved,
        "fraction of training starts whose binarised final state (sign(<s_i>) for "
        "thermal dynamics) has overlap >= 0.99 with their example",
        "fraction of training starts retrieved (overlap >= 0.99)",
        always=True,
    ),
    "converged_train": Metric(
        TRAIN,
        _converged,
        "fraction of training starts that reached a fixed point",
        "fraction of training starts that reached a fixed point",
        always=True,
    ),
    "m_test": Metric(
        TEST,
        _overlap_with_origin,
        "mean final overlap with the corrupted test example it started from "
        "(thermal dynamics: of the magnetisations <s_i>)",
        r"final overlap from test starts $m_{test}$",
    ),
    "converged_test": Metric(
        TEST,
        _converged,
        "fraction of test starts that reached a fixed point",
        "fraction of test starts that reached a fixed point",
    ),
    "test_best_train": Metric(
        TEST,
        _best_train,
        "mean over test starts of the attractor's best overlap with any training example",
        "test starts: best overlap of attractor with a training example",
    ),
    "test_best_feature": Metric(
        TEST,
        _best_feature,
        "mean over test starts of the attractor's best |overlap| with any of the dataset's hidden features "
        "or mixture prototypes (random features, mixture only)",
        "test starts: best |overlap| of attractor with a feature or prototype",
    ),
    "random_best_train": Metric(
        RANDOM,
        _best_train,
        "mean over random starts of the attractor's best overlap with any training example",
        "random starts: best overlap with a training example",
    ),
    "random_best_test": Metric(
        RANDOM,
        _best_test,
        "mean over random starts of the attractor's best overlap with any test example",
        "random starts: best overlap with a test example",
    ),
    "random_converged": Metric(
        RANDOM,
        _converged,
        "fraction of random starts that reached a fixed point",
        "fraction of random starts that reached a fixed point",
    ),
    "coupling_similarity": Metric(
        CELL,
        _coupling_similarity,
        "cosine similarity of learned and true couplings (spin glass only)",
        "cosine(learned J, true J)",
    ),
    "basin_mean": Metric(
        BASINS,
        _basin_mean,
        "mean over training examples of the basin 1 - m_in* = 2 k*/N, k* the most flipped "
        "sites from which the example is still retrieved, found by bisection (biased low in the "
        "lower tail) or, with retrieval.basin_method = scan, the unbiased sum over k of the retrieved "
        "fraction (retrieval.basin_examples > 0; NaN otherwise)",
        r"basin $2k^*/N$, bisection (mean)",
    ),
    "basin_q10": Metric(
        BASINS,
        _basin_quantile(0.1),
        "10% quantile over training examples of the basin 2 k*/N (bisection or scan)",
        r"basin $2k^*/N$, bisection (10% quantile)",
    ),
    "basin_q50": Metric(
        BASINS,
        _basin_quantile(0.5),
        "median over training examples of the basin 2 k*/N (bisection or scan)",
        r"basin $2k^*/N$, bisection (median)",
    ),
    "basin_q90": Metric(
        BASINS,
        _basin_quantile(0.9),
        "90% quantile over training examples of the basin 2 k*/N (bisection or scan)",
        r"basin $2k^*/N$, bisection (90% quantile)",
    ),
    **MEMORY_METRICS,  # what a clustering memory stored (pipeline/memory_metrics.py)
    "train_seconds": Metric(
        TIMINGS, attrgetter("train"), "wall time of training", "training wall time", "s", always=True
    ),
    "retrieval_seconds": Metric(
        TIMINGS,
        attrgetter("retrieval"),
        "wall time of all retrieval runs of the task",
        "retrieval wall time",
        "s",
        always=True,
    ),
    "basin_seconds": Metric(
        TIMINGS,
        attrgetter("basins"),
        "wall time of the bisection basins (0 when they are off)",
        "basin bisection wall time",
        "s",
    ),
    "no_solution_train": Metric(
        TRAIN,
        _no_solution,
        "fraction of training starts from which the dynamics' equations have no solution (adaptive TAP: "
        "its response cap still active when the iteration stopped); thermal overlaps leave them out",
        "fraction of training starts without a solution",
    ),
    # Appended (issue 22): new variables go at the end so the order of existing ones is kept.
    "retrieved_fraction": Metric(
        TRAIN,
        _retrieved_fraction,
        "fraction of training starts retrieved: binarised final state (sign(<s_i>) for thermal "
        "dynamics) at overlap >= 0.9 with its example; its fall through 1/2 is the capacity "
        "(half the patterns retrieved), whatever overlap the lost patterns end at",
        "fraction retrieved (overlap >= 0.9)",
    ),
}


def evaluate(group: str, inputs: Any) -> dict[str, float]:
    """Every metric of ``group`` (as METRICS holds it now) from that group's inputs."""
    return {name: m.compute(inputs) for name, m in METRICS.items() if m.group == group}


def undefined(group: str) -> dict[str, float]:
    """NaN for every metric of ``group``: its starts do not exist (no test examples)."""
    return {name: math.nan for name, m in METRICS.items() if m.group == group}


def result_values(scalars: dict[str, float], series: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """A cell's values in their declared dtypes (one per noise level for per-noise metrics)."""
    check_declared(set(scalars) | set(series))
    values = {name: np.asarray(series[name], dtype=m.dtype) for name, m in METRICS.items() if m.per_noise}
    values.update({name: m.dtype(scalars[name]) for name, m in METRICS.items() if not m.per_noise})
    return values


def check_declared(names: Iterable[str], what: str = "a cell result") -> None:
    """Refuse undeclared metrics and missing declared ones: a value stored without its declaration
    would have no cube variable, no label and no integrity check."""
    names = set(names)
    unknown, missing = sorted(names - METRICS.keys()), sorted(METRICS.keys() - names)
    if unknown or missing:
        raise ValueError(
            f"{what} does not match the metrics declared in pipeline/metrics.py: "
            f"undeclared {unknown}, missing {missing}"
        )
