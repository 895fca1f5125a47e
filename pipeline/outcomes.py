"""What a cell can come back as: a CellResult, a ``Skipped`` or a ``Failed``; and the guard that
turns a cell's exception into one of those values, so that one bad cell cannot stop a sweep."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable

from amsweep.pipeline.model import NotApplicable

__all__ = ["Failed", "guarded", "Skipped"]


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
