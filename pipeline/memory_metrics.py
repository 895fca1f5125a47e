"""Metrics of what a clustering memory stored: recovered components and token clusters.

Why a module of its own: these read the trained model (its memories and training diagnostics)
and the dataset's ground truth, not a relaxation, so the cell's per-noise loop does not compute
them. ``model_metrics(model, data)`` is the one call a cell needs to add them, and
``EXTRA_METRICS`` declares them (every one a float32 scalar per task, NaN where it does not
apply). Until the cell calls it, the same numbers come from the stored memories of a cube
(``[retrieval] store_couplings = true``) or from ``cell.train`` on the cube's tasks, which
reproduces the cube's models exactly (same random streams).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._sphere_attention import count_clusters
from amsweep.pipeline.model import Data, Model

# A memory on one component overlaps its prototype by ~1 once binarised (a mean of e examples
# with 10% flips has ~0.3 wrong sites of 64 at e = 8), a memory merging two by ~0.5, and a single
# example (what a KDE stores) by 1 - 2 flip = 0.8: 0.95 credits only means of several examples.
FOUND_OVERLAP = 0.95

EXTRA_METRICS: dict[str, str] = {
    "recovered_components": (
        "mean over the dataset's true prototypes of the best overlap of any binarised memory "
        "sign(mu_k) with it (mixture only)"
    ),
    "components_found": (
        f"fraction of true prototypes whose best binarised memory overlaps them by >= {FOUND_OVERLAP} (mixture only)"
    ),
    "components_as_oracle": (
        "fraction of true prototypes some binarised memory matches at least as well as the sign of the "
        "mean of that component's own training examples (the estimate true labels would give; mixture only)"
    ),
    "n_clusters": "clusters of the token set after the attention dynamics (single linkage at angle eps)",
    "cluster_steps": "attention steps until the cluster count took its final value",
    "clusters_converged": "1 if the token dynamics stopped moving (by tol) within max_steps, else 0",
}


def binarised(memories: np.ndarray) -> np.ndarray:
    """sign(mu) with ties +1, as the softmax dynamics reads out its states."""
    return np.where(np.asarray(memories) >= 0.0, 1.0, -1.0).astype(np.float32)


def best_match(memories: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Per prototype, the largest overlap of any binarised memory with it (one matrix product)."""
    N = prototypes.shape[1]
    return (binarised(memories) @ prototypes.astype(np.float32).T).max(axis=0) / N


def recovered_components(memories: np.ndarray, prototypes: np.ndarray) -> tuple[float, float]:
    """(mean best-match overlap, fraction found): does some memory sit on each true component?

    Best match per prototype, not per memory: duplicates and spare memories cost nothing, a
    prototype no memory reached costs its whole share.
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
    """
    prototypes = data.meta["prototypes"]
    oracle = label_means(data.train, data.meta["train_labels"], prototypes.shape[0])
    return float((best_match(memories, prototypes) >= best_match(oracle, prototypes) - 1e-6).mean())


def token_clusters(memories: np.ndarray, eps: float) -> int:
    """Clusters of stored token directions at angle eps (the count a self_attention rule reports)."""
    return int(count_clusters(np.asarray(memories, dtype=np.float64), eps)[0])


def model_metrics(model: Model, data: Data) -> dict[str, np.float32]:
    """Every EXTRA_METRICS value of one trained model (NaN where it does not apply)."""
    nan = np.float32(np.nan)
    out = {name: nan for name in EXTRA_METRICS}
    prototypes = data.meta.get("prototypes")
    if prototypes is not None and model.memories is not None:
        mean, found = recovered_components(model.memories, prototypes)
        out["recovered_components"], out["components_found"] = np.float32(mean), np.float32(found)
        if "train_labels" in data.meta:
            out["components_as_oracle"] = np.float32(as_oracle(model.memories, data))
    if "n_clusters" in model.info:
        out["n_clusters"] = np.float32(model.info["n_clusters"])
        out["cluster_steps"] = np.float32(model.info["form_steps"])
        out["clusters_converged"] = np.float32(bool(model.info["converged"]))
    return out
