"""What a cell measures, and the elementary quantities it is built from.

``METRICS`` is the single schema of a result: the cube template, the cell and the analysis all
read it, so a metric is declared once. Functions here are batched (rows are states) and
alphabet-aware: Ising +-1 (q == 2) or Potts 0..q-1 (q > 2).

Overlaps of a thermal dynamics (TAP, Glauber) are thermal overlaps (1/N) sum_i xi_i <s_i>, read
from the relaxation's ``magnetisation`` (see ``thermal_state``): the quantity the
replica-symmetric theory predicts. The binarised read-out sign(<s_i>) (the relaxation's ``final``)
decides ``success_train``; for zero-temperature dynamics the two are the same states. (No separate
binarised-overlap metric: a new metric cannot yet be added to a format-1 cube's upgrade.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from amsweep.pipeline import potts
from amsweep.pipeline.model import Relaxation


@dataclass(frozen=True)
class Metric:
    """A result variable. ``per_noise`` adds the noise axis; ``deterministic`` is False for timings."""

    description: str
    per_noise: bool
    units: str = ""
    deterministic: bool = True


METRICS: dict[str, Metric] = {
    "fixed_point_fraction": Metric("fraction of training examples that are fixed points of the dynamics", False),
    "m_train": Metric(
        "mean final overlap with the corrupted training example it started from "
        "(thermal dynamics: of the magnetisations <s_i>)",
        True,
    ),
    "success_train": Metric(
        "fraction of training starts whose binarised final state (sign(<s_i>) for "
        "thermal dynamics) has overlap >= 0.99 with their example",
        True,
    ),
    "converged_train": Metric("fraction of training starts that reached a fixed point", True),
    "m_test": Metric(
        "mean final overlap with the corrupted test example it started from "
        "(thermal dynamics: of the magnetisations <s_i>)",
        True,
    ),
    "converged_test": Metric("fraction of test starts that reached a fixed point", True),
    "test_best_train": Metric("mean over test starts of the attractor's best overlap with any training example", True),
    "test_best_feature": Metric(
        "mean over test starts of the attractor's best |overlap| with any hidden feature (random features only)", True
    ),
    "random_best_train": Metric(
        "mean over random starts of the attractor's best overlap with any training example", False
    ),
    "random_best_test": Metric("mean over random starts of the attractor's best overlap with any test example", False),
    "random_converged": Metric("fraction of random starts that reached a fixed point", False),
    "coupling_similarity": Metric("cosine similarity of learned and true couplings (spin glass only)", False),
    "basin_mean": Metric(
        "mean over training examples of the basin 1 - m_in* = 2 k*/N, k* the most flipped "
        "sites from which the example is still retrieved, found by bisection "
        "(retrieval.basin_examples > 0; NaN otherwise)",
        False,
    ),
    "basin_q10": Metric("10% quantile over training examples of the bisection basin 2 k*/N", False),
    "basin_q50": Metric("median over training examples of the bisection basin 2 k*/N", False),
    "basin_q90": Metric("90% quantile over training examples of the bisection basin 2 k*/N", False),
    "train_seconds": Metric("wall time of training", False, "s", deterministic=False),
    "retrieval_seconds": Metric("wall time of all retrieval runs of the task", False, "s", deterministic=False),
    "basin_seconds": Metric("wall time of the bisection basins (0 when they are off)", False, "s", deterministic=False),
}

SUCCESS_OVERLAP = 0.99


def thermal_state(relaxation: Relaxation) -> np.ndarray:
    """The states whose overlaps a cell reports: <s_i> of a thermal dynamics, else the final states.

    Overlaps are linear in the state, so (1/N) xi . <s> is the thermal overlap the
    replica-symmetric theory gives; zero-temperature dynamics set no magnetisation and keep
    their overlaps of ``final`` bit for bit.
    """
    m = relaxation.magnetisation
    return relaxation.final if m is None else m


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
