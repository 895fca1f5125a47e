"""A batch's outcomes as a few stacked arrays, so the driver unpickles per batch, not per cell.

Returned one by one, a small cell's CellResult is ~15 numpy objects, which Ray serializes as
separate buffers: unpickling them cost the driver ~110 us per cell (measured, 20,000 cells of
N = 32), and the driver shares the 2 cores with the workers. Stacked per metric, a batch of
any size is ~15 arrays; unpacking gives each cell row views of them. Values are the same bits
(a row is copied only into a column of its own shape and dtype); outcomes that are not plain CellResults (failures,
not applicable, stored couplings or magnetisations, another set of metrics) travel as they are.
The driver takes a batch as one ``ResultBlock`` (``to_block``: the stacked columns as they came,
no per-cell object); ``unpack`` gives the per-cell outcomes of the ``map_unordered`` interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from amsweep.pipeline.outcomes import CellResult, ResultBlock

__all__ = ["pack", "Packed", "to_block", "unpack"]


@dataclass(frozen=True)
class Packed:
    """Outcomes of a batch: the stacked CellResults (``rows``) and the rest, in batch order."""

    rows: np.ndarray  # (k,) positions in the batch of the stacked results
    indices: np.ndarray  # (k, 5) their task indices
    columns: dict[str, np.ndarray]  # metric -> (k, ...) values
    others: list[tuple[int, Any]]  # (position, outcome) of everything else
    seconds: np.ndarray  # (n,) each cell's wall time
    size: int
    cpu_seconds: float = 0.0  # CPU time the worker spent inside the cells (overhead accounting)


def _fits(values: dict[str, Any], layout: dict[str, tuple[Any, Any]]) -> bool:
    """Same metrics, shapes and dtypes as the batch's first result (so a row copy is exact)."""
    if values.keys() != layout.keys():
        return False
    for k, (shape, dtype) in layout.items():
        v = values[k]
        if getattr(v, "shape", None) != shape or getattr(v, "dtype", None) != dtype:
            return False
    return True


def pack(outcomes: list[tuple[Any, float]], cpu_seconds: float = 0.0) -> Packed:
    """Worker side: stack the CellResults that share the first one's metrics, shapes and dtypes."""
    first = next((o for o, _ in outcomes if isinstance(o, CellResult) and not o.has_task_arrays), None)
    layout: dict[str, tuple[Any, Any]] = (
        {}
        if first is None
        else {k: (getattr(v, "shape", None), getattr(v, "dtype", None)) for k, v in first.values.items()}
    )
    if any(shape is None or dtype is None for shape, dtype in layout.values()):
        layout, first = {}, None  # plain Python numbers: nothing to stack
    rows: list[int] = []
    others: list[tuple[int, Any]] = []
    for i, (o, _) in enumerate(outcomes):
        if first is not None and isinstance(o, CellResult) and not o.has_task_arrays and _fits(o.values, layout):
            rows.append(i)
        else:
            others.append((i, o))
    columns = {k: np.empty((len(rows), *shape), dtype=dtype) for k, (shape, dtype) in layout.items()} if rows else {}
    for j, i in enumerate(rows):
        values = outcomes[i][0].values
        for k, column in columns.items():
            column[j] = values[k]
    indices = np.array([outcomes[i][0].index for i in rows], dtype=np.int64) if rows else np.zeros((0, 5), np.int64)
    return Packed(
        np.array(rows, dtype=np.int64),
        indices,
        columns,
        others,
        np.array([s for _, s in outcomes], dtype=np.float64),
        len(outcomes),
        cpu_seconds,
    )


def unpack(packed: Packed) -> list[tuple[Any, float]]:
    """Driver side: the (outcome, seconds) list ``pack`` was given, CellResults as row views."""
    out: list[Any] = [None] * packed.size
    columns = packed.columns
    for j, i in enumerate(packed.rows.tolist()):
        out[i] = CellResult(tuple(packed.indices[j].tolist()), {k: col[j] for k, col in columns.items()})
    for i, o in packed.others:
        out[i] = o
    return list(zip(out, packed.seconds.tolist()))


def to_block(packed: Packed, jobs: Sequence[Any]) -> ResultBlock:
    """Driver side: the batch as one block, its columns as they came (no per-cell object); ``jobs``
    (the batch's CellJobs, in order) name the task of each cell that ended without results."""
    results = []
    ended = []
    for i, o in packed.others:
        if isinstance(o, CellResult):
            results.append(o)
        else:
            ended.append((jobs[i].task.index, o))
    return ResultBlock(packed.indices, packed.columns, tuple(results), tuple(ended))
