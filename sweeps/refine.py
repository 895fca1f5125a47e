"""Adaptive refinement of phase boundaries: grow a cube where its boundaries lie.

``refine`` runs a sweep, then in rounds: locate every boundary (the first crossing of the seed
mean through the threshold, ``amsweep.analysis.boundary``), and add grid values inside each
bracket wider than the tolerance, by growing the cube in place (``Cube.create_or_open`` with the
stored spec plus the new values: the extension machinery of ``amsweep run``), then run them.

Determinism and kill-safety. A round's new values depend only on done results: the seed means
on the grid the spec file gave plus the values earlier rounds added (not on the bootstrap). They
are committed to the cube's stored spec (one atomic write of its root document) *before* their
cells run. A refine started again on the same cube first runs whatever is pending, then replays
the rounds from the spec file's grid: a round whose values are already stored is not added
again, and the first round that proposes new values continues where the killed one stopped.
So a refine killed at any moment (between rounds, mid-round, mid-commit) and resumed makes the
same choices and ends with the same cube as one never interrupted; the stored spec records every
value added, so the cube can be rebuilt from it with ``amsweep run``.

Added values are exact: integers along P and N; along alpha, alpha = P/N for an integer P at the
group's N, written as the shortest decimal of at least four places that gives that P back, so
P = round(alpha N) stays unique at that N. A bracket one pattern wide (one N step) is as fine
as the grid can be and counts as located. A dataset's load list is shared by all its N, rules
and noise levels, so give one dataset entry per N to refine each N by itself (the bundled
``*_capacity_laptop`` specs do); otherwise a value added for one N runs at every N of the entry.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from amsweep.analysis import boundary
from amsweep.pipeline import limits, registry
from amsweep.pipeline.errors import CubeError, SpecError
from amsweep.sweeps.runner import run
from amsweep.pipeline.spec import Sweep, canonical_order, from_canonical
from amsweep.storage import query
from amsweep.storage.cube import Cube

__all__ = [
    "axis_key",
    "candidates",
    "cell_counts",
    "check_new_cells",
    "exact_alpha",
    "extended",
    "propose",
    "refine",
    "RefineReport",
    "restrict",
    "stored_spec",
    "union_spec",
    "values_of",
]


@dataclass
class RefineReport:
    """What a refine did: rounds that added values, whether every boundary is located, cells."""

    rounds: int = 0
    converged: bool = False
    interrupted: bool = False
    failed: int = 0
    cells: int = 0
    uniform: int = 0
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    added: list[dict[str, list[float]]] = field(default_factory=list)


def axis_key(along: str, sweep: Sweep) -> str:
    """The spec list a refine along ``along`` grows: a dataset's ``load`` or its ``N``."""
    if along == "N":
        return "N"
    if along != sweep.load_axis:
        raise SpecError(f"--along {along}: this sweep's load axis is {sweep.load_axis!r}")
    return "load"


def values_of(sweep: Sweep, key: str) -> dict[str, list[Any]]:
    """Each dataset variant's values along the refined axis."""
    return {d.label: list(d.N if key == "N" else d.load) for d in sweep.datasets}


def _appended(old: list[Any], new: list[Any]) -> list[Any]:
    return list(old) + [v for v in new if v not in old]


def union_spec(stored: dict[str, Any] | None, base: Sweep) -> Sweep:
    """The spec file's sweep plus the values a previous refine stored: reopening the cube with it
    grows nothing and drops nothing (the spec file alone would look like a removal of values)."""
    if stored is None:
        return base
    canonical = copy.deepcopy(base.canonical)
    by_label = {d["label"]: d for d in stored["datasets"]}
    for d in canonical["datasets"]:
        if d["label"] in by_label:
            for key in ("N", "load"):
                d[key] = _appended(d[key], by_label[d["label"]][key])
    for axis in ("N", "load"):
        canonical["axes"][axis] = _appended(canonical["axes"][axis], stored["axes"][axis])
    return from_canonical(canonical_order(canonical))


def extended(stored: Sweep, key: str, new: dict[str, list[Any]]) -> Sweep:
    """The stored spec with new values added to the named datasets (and to the cube's axis), in
    canonical order: values inside a bracket land mid-axis, and the cube is restaged to keep it sorted."""
    canonical = copy.deepcopy(stored.canonical)
    for d in canonical["datasets"]:
        d[key] = _appended(d[key], new.get(d["label"], []))
        canonical["axes"][key] = _appended(canonical["axes"][key], d[key])
    return from_canonical(canonical_order(canonical))


def check_new_cells(sweep: Sweep, key: str, new: dict[str, list[Any]]) -> None:
    """The dataset's own checks on every cell a new value creates, as spec validation would."""
    for d in sweep.datasets:
        module = registry.component("datasets", d.kind)
        for value in new.get(d.label, []):
            cells = [(value, x) for x in d.load] if key == "N" else [(N, value) for N in d.N]
            for N, x in cells:
                at = f"refine: dataset {d.label} at N={N}, {sweep.load_axis}={x}"
                P = limits.patterns(at, sweep.load_axis, x, int(N))
                limits.check_cell_size(at, int(N), P, d.P_test, sweep.retrieval.random_starts)
                try:
                    module.check(int(N), P, d.P_test, d.params)
                except (ValueError, OSError) as e:
                    raise SpecError(f"{at} (P={P}): {e}") from None


def exact_alpha(P: int, N: int) -> float:
    """alpha = P/N as the shortest decimal of >= 4 places with round(alpha N) == P."""
    for places in range(4, 16):
        alpha = round(P / N, places)
        if int(round(alpha * N)) == P:
            return alpha
    return P / N


def candidates(lo: float, hi: float, points: int, along: str, N: int, taken: list[Any]) -> list[Any]:
    """Up to ``points`` values evenly inside (lo, hi), on the integer grid of P (at this N) or N."""
    if along == "alpha":
        a, b = int(round(lo * N)), int(round(hi * N))
        used = {int(round(v * N)) for v in taken}
    else:
        a, b, used = int(lo), int(hi), {int(v) for v in taken}
    picks = sorted({a + int(round((b - a) * j / (points + 1))) for j in range(1, points + 1)})
    picks = [p for p in picks if a < p < b and p not in used]
    return [exact_alpha(p, N) for p in picks] if along == "alpha" else picks


def propose(
    table: pd.DataFrame, along: str, tol: float, points: int, current: dict[str, list[Any]]
) -> dict[str, list[Any]]:
    """New values per dataset for every located boundary whose bracket is wider than ``tol``."""
    adds: dict[str, list[Any]] = {}
    for _, row in table.iterrows():
        if row["found"] != "yes" or row["width"] <= tol * (1 + 1e-9):
            continue
        N = int(row["N"]) if along == "alpha" else 0
        label = str(row["dataset"])
        new = candidates(row["bracket_low"], row["bracket_high"], points, along, N, current[label])
        adds.setdefault(label, [])
        adds[label] += [v for v in new if v not in adds[label]]
    return {k: sorted(v) for k, v in sorted(adds.items()) if v}


def restrict(frame: pd.DataFrame, along: str, current: dict[str, list[Any]]) -> pd.DataFrame:
    """Rows on the grid refine has built so far (the spec file's values plus earlier rounds')."""
    keep = np.zeros(len(frame), dtype=bool)
    for label, values in current.items():
        keep |= (frame["dataset"] == label).to_numpy() & np.isin(frame[along].to_numpy(), values)
    return frame[keep]


def stored_spec(path: str) -> dict[str, Any] | None:
    """The canonical spec a cube at ``path`` stores; None where there is no finished cube (nothing
    there, or an interrupted creation, which ``Cube.create_or_open`` rebuilds or explains). A
    rewrite killed mid-swap (a round's values inserted mid-axis) is finished first: the values it
    added live only in its new root document."""
    from amsweep.storage import restage
    from amsweep.storage.objects import objects_at

    try:
        objects = objects_at(path)
        if restage.interrupted(objects):
            restage.resume(path, objects)
        return Cube.open(path).sweep.canonical
    except CubeError:
        return None


def cell_counts(sweep: Sweep, key: str, tol: float) -> tuple[int, int]:
    """(tasks in the cube, tasks of a uniform grid of spacing ``tol`` over each dataset's range)."""
    cells = sum(1 for _ in sweep.tasks())
    per = len(sweep.rules) * len(sweep.seeds)
    uniform = 0
    for d in sweep.datasets:
        values = d.N if key == "N" else d.load
        steps = int(math.floor((max(values) - min(values)) / tol + 1e-9)) + 1
        uniform += steps * len(d.load if key == "N" else d.N) * per
    return cells, uniform


def _run_round(
    path: str, sweep: Sweep, executor: Any, progress: bool, say: Callable[[str], None], k: int, report: RefineReport
) -> bool:
    """Grow (if needed) and run a cube; False when Ctrl-C stopped it."""
    with Cube.create_or_open(path, sweep, plugins=registry.sweep_code_hashes(sweep)) as cube:
        say(f"round {k}: {cube.count_pending()} task(s) to run")
        result = run(cube, executor, progress=progress, on_start=lambda _: say(f"round {k}: running"))
    report.failed += result.failed
    if result.interrupted:
        report.interrupted = True
        return False
    say(f"round {k}: done ({result.done} task(s) in {result.seconds:.1f} s)")
    return True


def refine(
    base: Sweep,
    path: str,
    tgt: boundary.Target,
    along: str,
    tol: float,
    rounds: int,
    executor: Any,
    where: dict[str, list[str]] | None = None,
    points: int = 1,
    progress: bool = False,
    say: Callable[[str], None] = print,
) -> RefineReport:
    """Run ``base`` into ``path``, then refine until each boundary is within ``tol`` or ``rounds``."""
    if tol <= 0 or rounds < 0 or points < 1:
        raise SpecError("--tol must be > 0, --rounds >= 0 and --points >= 1")
    key = axis_key(along, base)
    report = RefineReport()
    sweep = union_spec(stored_spec(path), base)
    if not _run_round(path, sweep, executor, progress, say, 0, report):
        return report
    current = values_of(base, key)
    for k in range(1, rounds + 1):
        ds = query.select(query.open_cube(path), where or {})
        frame, keys = boundary.curve_frame(ds, tgt, along)
        stored = Cube.open(path).sweep
        for label, values in values_of(stored, key).items():
            current.setdefault(label, values)  # a dataset the spec file lacks: its grid as stored
        table = boundary.table_from_frame(restrict(frame, along, current), keys, tgt, along, resamples=0)
        adds = propose(table, along, tol, points, current)
        if not adds:
            report.converged = True
            say(f"round {k}: every boundary is located to within {tol:g} (or to one grid step); stopping")
            break
        report.rounds = k
        report.added.append(adds)
        have = values_of(stored, key)
        new = {label: [v for v in vals if v not in have[label]] for label, vals in adds.items()}
        new = {label: vals for label, vals in new.items() if vals}
        for label, vals in adds.items():
            current[label] = _appended(current[label], vals)
            say(f"round {k}: {along} = {vals} for dataset {label}" + ("" if new.get(label) else " (already stored)"))
        if new:
            check_new_cells(stored, key, new)
            if not _run_round(path, extended(stored, key, new), executor, progress, say, k, report):
                return report
    final = query.select(query.open_cube(path), where or {})
    report.table = boundary.boundary_table(final, tgt, along)
    report.cells, report.uniform = cell_counts(Cube.open(path).sweep, key, tol)
    return report
