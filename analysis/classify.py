"""Memorization versus generalization: one class per (task, noise level).

The cube records, at each noise level, where corrupted training starts end (m_train) and where
corrupted test starts end: near their own test example (m_test) or near a training example
(test_best_train, the attractor's best overlap with any training example). From these:

- GENERALIZING: test starts end nearer their own, unseen example than any training example
  (m_test >= test_best_train + MARGIN), and specifically near it (m_test >= SPECIFIC).
- MEMORIZING: training starts are retrieved (m_train >= RETRIEVED) and test starts end nearer a
  training example than their own example (test_best_train >= m_test + MARGIN), specifically
  near it (test_best_train >= SPECIFIC).
- ELSEWHERE: training starts are retrieved, but test starts end on attractors specific to
  neither (random-pattern mixtures, spin-glass states, reversed patterns).
- NO_RETRIEVAL: training starts are not retrieved and test starts do not generalize.

Memorization is judged *relative* to generalization, not by test_best_train ~ 1 alone: on MNIST
at alpha <= 0.2 (sweeps/mnist_laptop.toml, noise 0) the test starts of PLM end on states that
agree with a training example on 89-93% of sites (mean best overlap 0.79-0.86) and with their
own example on 71-80% (m_test 0.43-0.60): mixtures of training digits, the memorization regime,
though rarely an exact training example. Generalization is tested first; the codes are ordered by capability,
so that a tie
between replicas resolves to the weaker claim.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import tables
from amsweep.pipeline.metric_table import SUCCESS_OVERLAP

__all__ = ["CLASS_COLORS", "class_frame", "class_label", "CLASS_NAMES", "classify", "MARGIN", "RETRIEVED", "SPECIFIC"]

NO_RETRIEVAL, ELSEWHERE, MEMORIZING, GENERALIZING = 0, 1, 2, 3
CLASS_NAMES = {
    NO_RETRIEVAL: "no retrieval",
    ELSEWHERE: "retrieves; test starts elsewhere",
    MEMORIZING: "memorizing",
    GENERALIZING: "generalizing",
}
CLASS_COLORS = {NO_RETRIEVAL: "#bdbdbd", ELSEWHERE: "#fdae61", MEMORIZING: "#2c7bb6", GENERALIZING: "#1a9641"}

# The metrics' own success criterion: a start is retrieved when its final overlap is >= 0.99.
RETRIEVED = SUCCESS_OVERLAP
# Specific, not chance: unrelated +-1 states overlap by O(1/sqrt(N)) (0.07 at N = 196), unrelated
# MNIST digits by ~0.1 and same-class digits by ~0.36 (docs/science.md#datasets), and a symmetric mixture of
# three random patterns by 0.5 with each. An attractor at overlap >= 0.5 with an example (75% of
# sites agree) is specific to that example rather than to its class or to a mixture.
SPECIFIC = 0.5
# m_test and test_best_train are means over <= 100 starts whose per-start spread is ~0.1, so
# each has a standard error ~0.01; a lead of 0.02 (two standard errors) is not sampling noise.
MARGIN = 0.02


def classify(m_train: np.ndarray, m_test: np.ndarray, test_best_train: np.ndarray) -> np.ndarray:
    """Class codes (float, NaN where undetermined) from broadcastable arrays of the three metrics.

    Without test starts (m_test or test_best_train NaN) only NO_RETRIEVAL can be decided; a
    missing m_train gives NaN.
    """
    m_train, m_test, best = (np.asarray(a, dtype=float) for a in (m_train, m_test, test_best_train))
    m_train, m_test, best = np.broadcast_arrays(m_train, m_test, best)
    retrieved = m_train >= RETRIEVED
    has_test = np.isfinite(m_test) & np.isfinite(best)
    generalizing = has_test & (m_test >= SPECIFIC) & (m_test >= best + MARGIN)
    memorizing = has_test & retrieved & (best >= SPECIFIC) & (best >= m_test + MARGIN)
    out = np.where(retrieved, ELSEWHERE, NO_RETRIEVAL).astype(float)
    out = np.where(memorizing, MEMORIZING, out)
    out = np.where(generalizing, GENERALIZING, out)
    undetermined = np.isnan(m_train) | (~has_test & retrieved)
    return np.where(undetermined, np.nan, out)


def class_frame(ds: xr.Dataset, name: str = "class") -> pd.DataFrame:
    """Per done task and noise level: the class and the metrics it was decided from.

    Also ``gen_gap`` = m_test - test_best_train: positive where test starts end nearer their own
    example than any training example, a continuous version of the class boundary.
    """
    frame = tables.tidy(ds, ["m_train", "m_test", "test_best_train"])
    frame[name] = classify(frame["m_train"], frame["m_test"], frame["test_best_train"])
    frame["gen_gap"] = frame["m_test"] - frame["test_best_train"]
    return frame


def class_label(code: float) -> str:
    """Readable name of a class code (NaN: undetermined)."""
    return "undetermined" if not np.isfinite(code) else CLASS_NAMES[int(code)]
