"""Metrics of what a clustering memory stored and retrieves: components, token clusters, modes.

Why a module of its own: these read the dataset's ground truth (the mixture's prototypes and
labels) and, for the once-per-cell (CELL) ones, the trained model's memories and training
diagnostics, so only clustering memories and mixtures give them a value (NaN elsewhere). Two
are TEST metrics, one value per noise level: where the attractor reached from a corrupted test
example lies relative to the prototypes (``test_mode_distance``: distance to the nearest one;
``test_own_mode``: exactly on its own component's). ``MEMORY_METRICS`` is merged into
``metrics.METRICS``, the one table the cell, the cube and analysis read; ``model_metrics``
evaluates the CELL ones for one model outside a cell (analysis reruns, tests).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from amsweep.pipeline.dynamics._sphere_attention import count_clusters
from amsweep.pipeline.metric_table import FOUND_OVERLAP, MEMORY_METRICS
from amsweep.pipeline.metric_types import CELL, CellInputs, Starts
from amsweep.pipeline.model import Data, Model
from amsweep.pipeline.ties import signs

__all__ = [
    "as_oracle",
    "best_match",
    "binarised",
    "distance_to_modes",
    "FOUND_OVERLAP",
    "label_means",
    "match_counts",
    "MEMORY_COMPUTE",
    "MEMORY_METRICS",
    "model_metrics",
    "own_mode_fraction",
    "recovered_components",
    "token_clusters",
]


def binarised(memories: np.ndarray) -> np.ndarray:
    """sign(mu) in {-1, 0, +1}: a site within rounding of 0 (``ties.signs``) is a tie and reads 0.

    A tie carries no information about the component, so it counts neither for nor against a
    prototype. Reading it as +1 (or by the sign of a ~1e-45 remainder, as this did before) made
    ``components_found`` depend on float noise: an even number of examples per component leaves
    many exact ties (3 of 6 flipped), and their remainders lean toward the prototype.
    """
    return signs(memories).astype(np.float32)


def match_counts(memories: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Per prototype, the largest sum_i b_i xi_i of any binarised memory b with it, as integers.

    Exact: sums of -1, 0, +1 in float32 are integers below 2^24 sites, so two memories that agree
    with a prototype equally well give equal counts, whatever the BLAS.
    """
    products = binarised(memories) @ prototypes.astype(np.float32).T
    return np.rint(products).astype(np.int64).max(axis=0)


def best_match(memories: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Per prototype, the largest overlap of any binarised memory with it (ties count 0)."""
    return match_counts(memories, prototypes) / prototypes.shape[1]


def recovered_components(memories: np.ndarray, prototypes: np.ndarray) -> tuple[float, float]:
    """(mean best-match overlap, fraction found): does some memory sit on each true component?

    Best match per prototype, not per memory: duplicates and spare memories cost nothing, a
    prototype no memory reached costs its whole share. Found: overlap >= FOUND_OVERLAP, compared
    as the exact count / N in float64.
    """
    best = best_match(memories, prototypes)
    return float(best.mean()), float((best >= FOUND_OVERLAP).mean())


def label_means(train: np.ndarray, labels: np.ndarray, C: int) -> np.ndarray:
    """Per component the mean of its own training examples (zeros for one without examples)."""
    onehot = np.zeros((labels.size, C), dtype=np.float32)
    onehot[np.arange(labels.size), labels] = 1.0
    counts = np.maximum(onehot.sum(axis=0), 1.0)
    return (onehot.T @ train.astype(np.float32)) / counts[:, None]


def as_oracle(memories: np.ndarray, data: Data) -> float:
    """Fraction of prototypes matched at least as well as by their own examples' mean.

    Separates what a memory lost (a merged or missing component) from what the examples never
    held (sites most of a component's examples have flipped), which caps ``components_found``.
    The oracle's ties (a component's examples split evenly at a site: its mean is exactly 0) count
    0 like the memory's, and the comparison is of exact integer counts: "at least as well" has no
    tolerance to tune.
    """
    prototypes = data.meta["prototypes"]
    oracle = label_means(data.train, data.meta["train_labels"], prototypes.shape[0])
    return float((match_counts(memories, prototypes) >= match_counts(oracle, prototypes)).mean())


def token_clusters(memories: np.ndarray, eps: float) -> int:
    """Clusters of stored token directions at angle eps (the count a self_attention rule reports)."""
    return int(count_clusters(np.asarray(memories, dtype=np.float64), eps)[0])


def distance_to_modes(states: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Per state, the fraction of sites where it differs from its nearest mode: (1 - best overlap) / 2.

    The measure of "energy minima sit near the context's modes", for states and modes in +-1
    (signed overlaps, unlike ``test_best_feature``'s |overlap|: a mode's negation is not a mode).
    """
    overlaps = states.astype(np.float64) @ modes.astype(np.float64).T / states.shape[1]
    return (1.0 - overlaps.max(axis=1)) / 2.0


def own_mode_fraction(states: np.ndarray, modes: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of states equal to the mode of the component their start was drawn from.

    Stricter than ``distance_to_modes``: a memory whose attractors collapse onto one mode has a
    small distance to *a* mode from every start, but retrieves its own mode for few of them.
    """
    return float(np.mean(np.all(states == modes[labels], axis=1)))


def _test_modes(s: Starts) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(binarised attractors, prototypes, each start's component) of the test starts, or None.

    The starts are the first test examples (``cell``), so their labels are the first test labels.
    None without prototypes or labels (not a mixture), on Potts data, or without test starts.
    """
    prototypes, labels = s.data.meta.get("prototypes"), s.data.meta.get("test_labels")
    n = s.examples.shape[0]
    if prototypes is None or labels is None or s.data.q != 2 or n == 0:
        return None
    return s.relaxation.final, prototypes, labels[:n]


def _mode_distance(s: Starts) -> float:
    found = _test_modes(s)
    return math.nan if found is None else float(distance_to_modes(found[0], found[1]).mean())


def _own_mode(s: Starts) -> float:
    found = _test_modes(s)
    return math.nan if found is None else own_mode_fraction(*found)


def _components(c: CellInputs) -> tuple[float, float]:
    prototypes = c.data.meta.get("prototypes")
    if prototypes is None or c.model.memories is None:
        return math.nan, math.nan
    return recovered_components(c.model.memories, prototypes)


def _as_oracle(c: CellInputs) -> float:
    memories = c.model.memories
    if memories is None or "prototypes" not in c.data.meta or "train_labels" not in c.data.meta:
        return math.nan
    return as_oracle(memories, c.data)


def _info(key: str, convert: Callable[[Any], float] = float) -> Callable[[CellInputs], float]:
    """A training diagnostic of the self_attention rule (NaN for every other model)."""
    return lambda c: convert(c.model.info[key]) if "n_clusters" in c.model.info else math.nan


# How each metric of ``metric_table.MEMORY_METRICS`` is computed (same names).
MEMORY_COMPUTE: dict[str, Callable[[Any], float]] = {
    "recovered_components": lambda c: _components(c)[0],
    "components_found": lambda c: _components(c)[1],
    "components_as_oracle": _as_oracle,
    "n_clusters": _info("n_clusters"),
    "cluster_steps": _info("form_steps"),
    "clusters_converged": _info("converged", lambda v: float(bool(v))),
    "test_mode_distance": _mode_distance,
    "test_own_mode": _own_mode,
}


def model_metrics(model: Model, data: Data) -> dict[str, float]:
    """Every once-per-cell (CELL) MEMORY_METRICS value of one trained model, as a cell computes them."""
    inputs = CellInputs(data, model, np.empty((0, data.N), dtype=data.train.dtype))
    return {name: MEMORY_COMPUTE[name](inputs) for name, m in MEMORY_METRICS.items() if m.group == CELL}
