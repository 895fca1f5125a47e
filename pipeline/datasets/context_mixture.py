"""A mixture of K random +-1 prototypes with flip noise: contexts whose modes are known.

Why +-1 points and not continuous ones: every cell speaks +-1 int8 states (corruption by site
flips, overlaps, sign read-outs), so a mixture in the hypercube lets an energy-based memory be
judged by the same machinery as every other rule. Each example is a prototype chosen uniformly
with every site flipped independently with probability ``flip`` < 1/2, so the prototypes are
the modes of the mixture (its components' most likely points) and the target of retrieval: an
in-context memory should put its energy minima on them, not on the noisy examples.

A cell's P training examples are the context; its P_test test examples are fresh draws from the
same mixture (held-out points). ``meta["features"]`` holds the prototypes, so the cell's
``test_best_feature`` is the attractor's best overlap with a mode (its Hamming distance to the
nearest mode is (1 - overlap) / 2); ``meta["prototypes"]`` is the same array by its own name.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Data, Param

PARAMS: dict[str, Param] = {
    "K": Param(4, int, "number of prototypes (mixture components, equal weights)", low=1),
    "flip": Param(
        0.1,
        float,
        "probability that each site of an example differs from its prototype",
        low=0.0,
        high=0.5,
        open_high=True,
    ),
}

META = ("features", "prototypes", "train_labels", "test_labels")


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Any N >= 2; the prototypes are drawn independently, so any K and P can be served."""
    if N < 2:
        raise ValueError(f"context_mixture needs N >= 2, got N={N}")


def draw(prototypes: np.ndarray, count: int, flip: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` examples (int8) and their labels: a uniform prototype with each site flipped w.p. ``flip``."""
    labels = rng.integers(0, prototypes.shape[0], size=count)
    noise = np.where(rng.random((count, prototypes.shape[1])) < flip, -1, 1).astype(np.int8)
    return prototypes[labels] * noise, labels


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """Prototypes once per cell, then P context points and P_test held-out points of the same mixture."""
    check(N, P, P_test, params)
    prototypes = np.where(rng.random((int(params["K"]), N)) < 0.5, 1, -1).astype(np.int8)
    X, labels = draw(prototypes, P + P_test, float(params["flip"]), rng)
    return Data(
        train=X[:P],
        test=X[P:],
        q=2,
        meta={
            "features": prototypes,
            "prototypes": prototypes,
            "train_labels": labels[:P],
            "test_labels": labels[P:],
        },
    )
