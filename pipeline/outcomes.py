"""What a cell can come back as: a CellResult, a ``Skipped`` or a ``Failed``; the guard that
turns a cell's exception into one of those values, so that one bad cell cannot stop a sweep; and
``ResultBlock``, the finished cells of one batch as columns, the unit the driver collects and the
cube writes (issue 26: one CellResult per cell, a dict of ~28 array views, cost the collector
thread ~18 us a cell; a block costs it a few attribute reads per batch).

A declaration, not computation: storage writes CellResults and imports them from here, so that
opening a cube loads no cell, rule, dataset or dynamics module (``pipeline/cell.py`` produces them).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from amsweep.pipeline.model import NotApplicable

__all__ = ["CellResult", "Failed", "guarded", "NO_INDICES", "ResultBlock", "Skipped"]


@dataclass(frozen=True)
class CellResult:
    """Metric values of one task: scalars, or arrays of length n_noise for per-noise metrics."""

    index: tuple[int, ...]
    values: dict[str, np.ndarray]
    couplings: np.ndarray | None = None  # only when the spec asks to store them
    magnetisations: np.ndarray | None = None  # (noise, train starts, N) float32, only when asked

    @property
    def has_task_arrays(self) -> bool:
        """True if the result carries per-task objects besides its metric values."""
        return self.couplings is not None or self.magnetisations is not None


@dataclass(frozen=True)
class Failed:
    """A cell raised; the traceback text is kept for `amsweep status` and the side log."""

    error: str


@dataclass(frozen=True)
class Skipped:
    """A cell the rule, dynamics or dataset cannot serve (recorded as not applicable)."""

    reason: str


NO_INDICES = np.zeros((0, 5), dtype=np.int64)  # the task indices of a block without stacked results
NO_INDICES.flags.writeable = False


@dataclass(frozen=True)
class ResultBlock:
    """Finished cells of one batch: the stacked results as columns (row ``j`` of every column is the
    task ``indices[j]``), the results that did not stack (per-task arrays, another layout) as they
    are, and the cells that ended without results, by task index."""

    indices: np.ndarray  # (k, 5) int64 task indices of the stacked results
    columns: dict[str, np.ndarray]  # metric -> (k, ...) values
    results: tuple[CellResult, ...] = ()
    ended: tuple[tuple[tuple[int, ...], "Failed | Skipped"], ...] = ()

    @property
    def done(self) -> int:
        """Cells with results (stacked or not)."""
        return len(self.indices) + len(self.results)

    @property
    def size(self) -> int:
        """Every cell of the block."""
        return len(self.indices) + len(self.results) + len(self.ended)

    @classmethod
    def of_one(cls, index: tuple[int, ...], outcome: Any) -> "ResultBlock":
        """One cell's outcome as a block (an executor without batches: the runner's fallback)."""
        if isinstance(outcome, CellResult):
            return cls(NO_INDICES, {}, (outcome,))
        assert isinstance(outcome, (Failed, Skipped)), f"not a cell outcome: {outcome!r}"
        return cls(NO_INDICES, {}, (), ((tuple(index), outcome),))

    def cell_results(self) -> list[CellResult]:
        """Every result of the block as a CellResult (rows as views): the general write path."""
        rows = [
            CellResult(tuple(i), {k: c[j] for k, c in self.columns.items()})
            for j, i in enumerate(self.indices.tolist())
        ]
        return rows + list(self.results)


def guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a cell and turn its exceptions into values."""
    try:
        return fn(*args)
    except NotApplicable as e:
        return Skipped(str(e))
    except Exception:
        return Failed(traceback.format_exc(limit=8))


def cell_blocks(pairs: Iterable[tuple[Any, Any]]) -> Iterator[ResultBlock]:
    """Each (job, outcome) of a ``map_unordered`` as its own one-cell block: the one wrapper for
    cells that do not come in batches (the runner's fallback for an executor without
    ``map_blocks``, SerialExecutor, a RayExecutor subclass that overrides ``map_unordered``)."""
    for job, outcome in pairs:
        yield ResultBlock.of_one(job.task.index, outcome)
