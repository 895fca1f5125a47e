"""What a cell can come back as: a CellResult, a ``Skipped`` or a ``Failed``; and the guard that
turns a cell's exception into one of those values, so that one bad cell cannot stop a sweep.

A declaration, not computation: storage writes CellResults and imports them from here, so that
opening a cube loads no cell, rule, dataset or dynamics module (``pipeline/cell.py`` produces them).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from amsweep.pipeline.model import NotApplicable

__all__ = ["CellResult", "Failed", "guarded", "Skipped"]


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


def guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a cell and turn its exceptions into values."""
    try:
        return fn(*args)
    except NotApplicable as e:
        return Skipped(str(e))
    except Exception:
        return Failed(traceback.format_exc(limit=8))
