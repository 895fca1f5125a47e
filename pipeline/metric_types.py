"""The vocabulary of metrics: groups of starts, their inputs, and the Metric declaration.

Apart from ``metric_table`` (the declarations) and ``metrics`` (the formulas), which both use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from amsweep.pipeline.model import Data, Model, Relaxation

__all__ = ["CellInputs", "GROUPS", "Metric", "PER_NOISE", "Starts", "thermal_state", "Timings"]


def thermal_state(relaxation: Relaxation) -> np.ndarray:
    """The states whose overlaps a cell reports: <s_i> of a thermal dynamics (overlaps are linear
    in the state, so (1/N) xi . <s> is the thermal overlap), else the final states, bit for bit."""
    m = relaxation.magnetisation
    return relaxation.final if m is None else m


TRAIN, TEST, RANDOM, CELL, BASINS, TIMINGS = "train", "test", "random", "cell", "basins", "timings"
GROUPS = (TRAIN, TEST, RANDOM, CELL, BASINS, TIMINGS)
PER_NOISE = (TRAIN, TEST)  # groups evaluated once per noise level: their metrics have a noise axis


@dataclass(frozen=True)
class Starts:
    """Relaxed starts (TRAIN, TEST, RANDOM) and what their metrics compare them with."""

    relaxation: Relaxation
    data: Data
    origin: np.ndarray | None = None  # the examples the starts were corrupted from (None: random starts)
    # what several formulas read (the overlaps with the examples, the unsolved rows), computed once
    # by the first (``metrics``); the metrics of one batch are then ~20 us, not ~45 (N = 32)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def state(self) -> np.ndarray:
        return thermal_state(self.relaxation)

    @property
    def examples(self) -> np.ndarray:  # TRAIN and TEST metrics compare with these
        if self.origin is None:
            raise ValueError("random starts have no example they were corrupted from")
        return self.origin


@dataclass(frozen=True)
class CellInputs:
    """What the once-per-cell metrics (CELL) read: the data, the model and the fixed-point test."""

    data: Data
    model: Model
    after_one_sweep: np.ndarray  # each training example after one sweep of the zero-temperature dynamics


@dataclass(frozen=True)
class Timings:
    """Wall times (TIMINGS) the cell measures, in seconds."""

    train: float
    retrieval: float
    basins: float


@dataclass(frozen=True)
class Metric:
    """One result variable: what storage and analysis read about it (its formula is
    ``metrics.COMPUTE[name]``: takes its group's inputs, ``Starts``, ``CellInputs``, the
    per-example basin array 2 k*/N, or ``Timings``, and returns one number). ``always``: every done task has a
    finite value by construction (a fraction of counted starts, a timing), so ``storage.check``
    reports a NaN there as damage and analysis needs no scan to know the metric has data. A
    metric added to existing cubes cannot be ``always``: tasks done before it hold NaN.
    """

    group: str
    description: str  # the whole sentence: the ``description`` attribute a cube is read with
    label: str  # axis and legend label of figures
    units: str = ""  # empty: dimensionless (read without a ``units`` attribute, as CF allows)
    always: bool = False
    dtype: type[np.floating] = np.float32
    long_name: str = ""  # a few words, the ``long_name`` xarray labels plots with (empty: ``label``)

    def __post_init__(self) -> None:
        if self.group not in GROUPS:  # the cell prepares inputs only for these
            raise ValueError(f"metric group {self.group!r}: expected one of {GROUPS}")

    @property
    def per_noise(self) -> bool:
        return self.group in PER_NOISE

    @property
    def deterministic(self) -> bool:
        """Timings differ between runs; every other value is a function of the task and seed."""
        return self.group != TIMINGS

    def dims(self, task_dims: Sequence[str]) -> tuple[str, ...]:
        return (*task_dims, "noise") if self.per_noise else tuple(task_dims)
