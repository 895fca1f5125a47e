"""The [retrieval] keys of the basin metric and the canonical form they take in a spec.

Apart from ``basin_bisection`` (which computes the basins) because the spec declares and hashes
these keys: the spec is a declaration that storage reads, and must not import the bisection, the
metrics it computes with, or their kernels (docs/architecture.md, layers).
"""

from __future__ import annotations

from typing import Any

from amsweep.pipeline.errors import SpecError
from amsweep.pipeline.model import Param

__all__ = ["canonical_retrieval", "METHODS", "PARAMS"]

# [retrieval] keys of a spec; ``basin_examples = 0`` (the default) turns the metric off, and the
# three keys are then left out of the spec's canonical form (cubes made before they existed
# reopen unchanged).
PARAMS: dict[str, Param] = {
    "basin_examples": Param(
        0,
        int,
        "training examples whose basin is found by bisection on the number "
        "of flipped sites (0 = off; at most P are used)",
        low=0,
    ),
    "basin_trials": Param(
        3,
        int,
        "corrupted copies per example and bisection step; the example is "
        "retrieved when at least half of them end at overlap >= basin_criterion",
        low=1,
    ),
    "basin_criterion": Param(0.99, float, "overlap that counts as retrieval", low=0.0, high=1.0, open_low=True),
    "basin_method": Param(
        "bisect",
        str,
        "bisect: bisection on the flip count, majority of basin_trials, ~log2(N) rounds, biased low "
        "(issue 22); scan: every flip count with basin_trials starts of its own, basin = sum over k "
        "of the retrieved fraction, unbiased, ~N/2 rounds",
        choices=("bisect", "scan"),
    ),
}
METHODS = ("bisect", "scan")


def canonical_retrieval(retrieval: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The resolved [retrieval] table without the basin keys when the metric is off.

    Leaving them out keeps the canonical form (and hash) of every spec that does not use the
    metric what it was before the metric existed. A trial count or criterion given while
    basin_examples is 0 would be silently ignored, so it is refused.
    """
    if retrieval["basin_examples"] > 0:
        if retrieval.get("basin_method", "bisect") == "bisect":  # the default: earlier hashes unchanged
            return {k: v for k, v in retrieval.items() if k != "basin_method"}
        return retrieval
    stray = sorted(k for k in ("basin_trials", "basin_criterion", "basin_method") if k in given)
    if stray:
        raise SpecError(
            f"retrieval: {', '.join(stray)} given but basin_examples = 0 (the bisection "
            "basin is off); set basin_examples > 0 or remove them"
        )
    return {k: v for k, v in retrieval.items() if k not in PARAMS}
