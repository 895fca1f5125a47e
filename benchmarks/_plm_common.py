"""What the PLM benchmarks share: default parameters and a switch between the two forms."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from amsweep.pipeline.rules import plm


def params(**overrides) -> dict:
    """PLM parameters as the spec layer would pass them: every key, defaults filled in."""
    return {**{k: p.default for k, p in plm.PARAMS.items()}, **overrides}


@contextmanager
def forced_form(form: str) -> Iterator[None]:
    """Make plm.train take the 'dual' or the 'primal' form whatever the load (benchmarks only)."""
    if form not in ("dual", "primal"):
        raise ValueError(f"form must be 'dual' or 'primal', got {form!r}")
    saved = plm.DUAL_MAX_ALPHA, plm.DUAL_MAX_ALPHA_SYMMETRIC
    limit = float("inf") if form == "dual" else -1.0
    plm.DUAL_MAX_ALPHA = plm.DUAL_MAX_ALPHA_SYMMETRIC = limit
    try:
        yield
    finally:
        plm.DUAL_MAX_ALPHA, plm.DUAL_MAX_ALPHA_SYMMETRIC = saved
