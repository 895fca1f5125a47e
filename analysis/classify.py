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
though rarely an exact training example. Generalization is tested first; the codes are ordered by capability.

A cell's class (one grid point: every task axis but the seed, and one noise level) is decided from
the seed means of the three metrics, with their standard errors in view (``decide``):

- each threshold comparison (m_train >= RETRIEVED, m_test >= SPECIFIC, ...) is *clear* when the
  seed mean is further from the threshold than Z standard errors of the mean, *open* otherwise;
- a cell whose open comparisons cannot change its class is decided by the means;
- otherwise, along increasing noise, it keeps the class of the previous noise level if the open
  comparisons allow that class (hysteresis), and takes the means' class if they do not or if it
  is the first noise level.

Why: on the quickstart cube Hebb at alpha 0.05 read memorizing at rho 0-0.05, "retrieves; test
starts elsewhere" at rho 0.1 and memorizing again at 0.15-0.3, because 2 of 3 seeds had
test_best_train 0.444 and 0.495 < SPECIFIC = 0.5 at rho 0.1 (seed mean 0.488 +- 0.023): the
threshold crossed by half a standard error, a one-seed fluctuation, drawn as a phase. The majority
vote over seeds that was used before flips on exactly such a seed. With one seed there is no
standard error: every comparison is clear and the class is the seed's own (the rule above).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import tables
from amsweep.pipeline.metric_table import SUCCESS_OVERLAP
from amsweep.storage.query import WHOLE_NOISE

__all__ = [
    "CLASS_COLORS",
    "class_frame",
    "class_label",
    "class_map",
    "CLASS_NAMES",
    "classify",
    "decide",
    "MARGIN",
    "RETRIEVED",
    "SPECIFIC",
    "Z",
]

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
# A comparison of a seed mean with its threshold counts only beyond Z standard errors of that
# mean: one standard error, the smallest lead that a one-seed fluctuation does not produce as
# often as not (3 seeds: a seed 0.04 off moves the mean by 0.013 against a standard error ~0.02).
Z = 1.0


def _codes(
    m_train_nan: np.ndarray,
    has_test: np.ndarray,
    retrieved: np.ndarray,
    gen_specific: np.ndarray,
    gen_margin: np.ndarray,
    mem_specific: np.ndarray,
    mem_margin: np.ndarray,
) -> np.ndarray:
    """Class codes from the outcomes of the five threshold comparisons (NaN where undetermined)."""
    generalizing = has_test & gen_specific & gen_margin
    memorizing = has_test & retrieved & mem_specific & mem_margin
    out = np.where(retrieved, ELSEWHERE, NO_RETRIEVAL).astype(float)
    out = np.where(memorizing, MEMORIZING, out)
    out = np.where(generalizing, GENERALIZING, out)
    undetermined = m_train_nan | (~has_test & retrieved)
    return np.where(undetermined, np.nan, out)


def classify(m_train: np.ndarray, m_test: np.ndarray, test_best_train: np.ndarray) -> np.ndarray:
    """Class codes (float, NaN where undetermined) from broadcastable arrays of the three metrics.

    Without test starts (m_test or test_best_train NaN) only NO_RETRIEVAL can be decided; a
    missing m_train gives NaN.
    """
    m_train, m_test, best = (np.asarray(a, dtype=float) for a in (m_train, m_test, test_best_train))
    m_train, m_test, best = np.broadcast_arrays(m_train, m_test, best)
    has_test = np.isfinite(m_test) & np.isfinite(best)
    return _codes(
        np.isnan(m_train),
        has_test,
        m_train >= RETRIEVED,
        m_test >= SPECIFIC,
        m_test >= best + MARGIN,
        best >= SPECIFIC,
        best >= m_test + MARGIN,
    )


def decide(means: dict[str, np.ndarray], sems: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The means' class and a bit mask of every class the open comparisons allow (bit ``1 << code``).

    ``means`` / ``sems``: seed means and standard errors of m_train, m_test, test_best_train and
    gen_gap (m_test - test_best_train per seed: its standard error is that of the paired
    difference, smaller than the two errors combined). A NaN standard error (one seed) is no error.
    """
    m_train, m_test, best, gap = (
        np.asarray(means[k], dtype=float) for k in ("m_train", "m_test", "test_best_train", "gen_gap")
    )
    point = classify(m_train, m_test, best)
    has_test = np.isfinite(m_test) & np.isfinite(best)
    # (value, threshold, standard error) of each comparison "value >= threshold", in _codes' order
    tests = [
        (m_train, RETRIEVED, sems["m_train"]),
        (m_test, SPECIFIC, sems["m_test"]),
        (gap, MARGIN, sems["gen_gap"]),
        (best, SPECIFIC, sems["test_best_train"]),
        (-gap, MARGIN, sems["gen_gap"]),
    ]
    outcome, open_ = [], []
    for value, threshold, sem in tests:
        err = np.nan_to_num(np.asarray(sem, dtype=float), nan=0.0)
        outcome.append(value >= threshold)
        open_.append(np.abs(value - threshold) < Z * err)
    allowed = np.zeros(point.shape, dtype=int)
    for combo in range(1 << len(tests)):  # every way the open comparisons could turn out
        flip = [bool(combo >> i & 1) for i in range(len(tests))]
        cond = [c ^ f for c, f in zip(outcome, flip)]
        reachable = np.logical_and.reduce([o | (not f) for o, f in zip(open_, flip)])
        reachable &= ~(cond[2] & cond[4])  # the two margins exclude each other
        codes = _codes(np.isnan(m_train), has_test, *cond)
        for code in CLASS_NAMES:
            allowed |= np.where(reachable & (codes == code), 1 << code, 0)
    return point, allowed


def class_map(frame: pd.DataFrame, cells: list[str], noise: str = "noise") -> pd.DataFrame:
    """One row per cell (``cells`` + noise): the decided ``class``, the means' ``class_mean``,
    ``firm`` (no open comparison can change it) and the seed count ``n``; see the module docstring."""
    frame = frame.assign(gen_gap=frame["m_test"] - frame["test_best_train"])
    metrics = ["m_train", "m_test", "test_best_train", "gen_gap"]
    g = frame.groupby([*cells, noise], dropna=False)[metrics]
    means, sems = g.mean(), g.sem()
    point, allowed = decide({m: means[m].to_numpy() for m in metrics}, {m: sems[m].to_numpy() for m in metrics})
    out = means.reset_index()[[*cells, noise]]
    out["class_mean"], out["_allowed"], out["n"] = point, allowed, g.size().to_numpy()
    codes = np.where(np.isfinite(point), point, 0).astype(int)
    out["firm"] = np.isfinite(point) & (allowed == (1 << codes))
    # walk each line of cells (all keys but noise) in increasing noise; plain arrays, not .at, so
    # that a cube of 10^5 cells is classified in well under a second
    groups = out.groupby(cells, dropna=False, sort=False).ngroup().to_numpy() if cells else np.zeros(len(out), int)
    order = np.lexsort([out[noise].to_numpy(), groups])
    line = groups[order]
    mean_class, firm, allow = (out[c].to_numpy()[order] for c in ("class_mean", "firm", "_allowed"))
    decided_sorted = np.full(len(out), np.nan)
    previous = np.nan
    for k in range(len(out)):
        if k == 0 or line[k] != line[k - 1]:
            previous = np.nan  # a new line: no history
        here = mean_class[k]
        if np.isfinite(here) and not firm[k] and np.isfinite(previous) and allow[k] >> int(previous) & 1:
            here = previous
        decided_sorted[k] = previous = here
    decided = np.empty(len(out))
    decided[order] = decided_sorted
    out["class"] = decided
    return out.drop(columns="_allowed")


def class_frame(ds: xr.Dataset, name: str = "class") -> pd.DataFrame:
    """Per done task and noise level: its cell's class (``class_map``: decided from every seed of
    the cell in ``ds``, so the same on each of them), the replica's own class ``class_seed`` by the
    thresholds alone, and the metrics they were decided from.

    Also ``gen_gap`` = m_test - test_best_train: positive where test starts end nearer their own
    example than any training example, a continuous version of the class boundary.
    """
    frame = tables.tidy(ds, ["m_train", "m_test", "test_best_train"])
    frame["class_seed"] = classify(frame["m_train"], frame["m_test"], frame["test_best_train"])
    frame["gen_gap"] = frame["m_test"] - frame["test_best_train"]
    cells = [d for d in tables.task_dims(ds) if d != "seed" and d in frame.columns]
    # a selection on noise keeps every noise level beside it: the hysteresis walks them all, so a
    # cell's class is the same whatever noise levels a --where keeps (and the same as `amsweep serve`)
    whole = ds.encoding.get(WHOLE_NOISE)
    source = frame if whole is None else tables.tidy(whole, ["m_train", "m_test", "test_best_train"])
    decided = class_map(source, cells)[[*cells, "noise", "class"]].rename(columns={"class": name})
    return frame.merge(decided, on=[*cells, "noise"], how="left")


def class_label(code: float) -> str:
    """Readable name of a class code (NaN: undetermined)."""
    return "undetermined" if not np.isfinite(code) else CLASS_NAMES[int(code)]
