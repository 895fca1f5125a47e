"""Sizes a sweep can never fit, refused at validation rather than as a MemoryError in hour three.

These are sanity bounds that hold on any machine (a cube axis, one cell's arrays); whether a
cell fits the memory of a given node is a separate, per-cluster estimate.
"""

from __future__ import annotations

import math

from amsweep.pipeline.errors import SpecError

__all__ = [
    "check_cell_size",
    "check_count",
    "check_variants",
    "GiB",
    "MAX_CELL_BYTES",
    "MAX_CELLS",
    "MAX_VARIANTS",
    "patterns",
]

MAX_CELLS = 1_000_000  # tasks in one cube: the driver walks them and holds their status in memory
MAX_VARIANTS = 10_000  # variants of one entry, each checked against its dataset at validation
MAX_CELL_BYTES = 64 * 2**30  # float32 (P + P_test + random starts) x N data plus N x N couplings
GiB = 2**30


def check_count(where: str, count: int, what: str) -> None:
    """An axis or grid longer than a cube can hold (also caught before it is ever built)."""
    if count > MAX_CELLS:
        raise SpecError(
            f"{where}: {count} {what}; at most {MAX_CELLS} fit in one cube (the driver "
            "holds every task's status): split the sweep or use fewer values"
        )


def check_variants(where: str, count: int, detail: str) -> None:
    """The product of an entry's swept lists, refused before a single variant is built."""
    if count > MAX_VARIANTS:
        raise SpecError(
            f"{where}: the swept parameters ({detail}) make {count} variants; at most "
            f"{MAX_VARIANTS} per entry: sweep fewer values or split the entry"
        )


def patterns(where: str, load_axis: str, x: float, N: int) -> int:
    """P of a cell: the load itself, or round(alpha N) (at least 1); refused if it overflows."""
    if load_axis == "P":
        return int(x)
    product = x * N
    if not math.isfinite(product) or product > 2**62:
        raise SpecError(
            f"{where}: alpha = {x!r} at N = {N} gives P = alpha N = {product:.3g} patterns, "
            f"which cannot fit in memory; lower alpha or N"
        )
    return max(1, int(round(product)))


def check_cell_size(where: str, N: int, P: int, P_test: int, random_starts: int) -> None:
    """One cell holds float32 (P + P_test + random starts) x N states and N x N couplings."""
    nbytes = 4 * N * (N + P + P_test + random_starts)
    if nbytes > MAX_CELL_BYTES:
        raise SpecError(
            f"{where}: N = {N}, P = {P}, P_test = {P_test}, random_starts = {random_starts} need about "
            f"{nbytes / GiB:.3g} GiB per cell (float32 N x N couplings plus examples x N); at most "
            f"{MAX_CELL_BYTES // GiB} GiB: lower N, the loads or the example counts"
        )
