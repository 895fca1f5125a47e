"""A numpy-only view of a cube: the selection and the tidy table of ``amsweep query``.

``storage.query`` reads cubes as xarray Datasets for analysis; this module answers the same
questions without importing xarray, pandas, zarr, dask or numba, which cost ``amsweep query`` over
a second of its start (issue 26: ``query`` starts in <= 0.3 s of import). A ``View`` is a cube plus
the positions a ``--where`` keeps along each axis (in the order given, as ``Dataset.sel``), and the
cells a selection on the derived load (``P`` of an alpha cube) keeps inside its box; ``frame`` reads
one metric of the selection and checks it as ``storage.query.integrity`` and ``to_frame`` do (lost
values of done tasks, lost status), with the same coordinate names (``storage.attributes``) and the
same column order. ``storage.query.to_frame`` still builds the analysis API's table from an xarray
selection (any ``.sel`` or mask an analysis adds, which a View cannot take); the two share the
``--where`` parsing, wording and seed statistics, and tests/test_query_numpy.py holds their tables
equal on real cubes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from amsweep.pipeline.errors import QueryError
from amsweep.pipeline.metric_table import METRICS
from amsweep.storage import schema
from amsweep.storage.schema import DONE, PENDING
from amsweep.storage.table import Table

__all__ = ["Coord", "frame", "MISSING", "open_view", "parse_where", "select", "SHADOWED", "View"]

MISSING = "missing"  # column counting lost values of done tasks (only with allow_missing)

# Names a coordinate must not take, as ``storage.attributes.SHADOWED`` computes them from xarray's
# Dataset and DataArray attributes (a coordinate ``clip`` is read as ``rule_clip``); spelled out here
# so that the query need not import xarray to name its columns. tests/test_query_numpy.py checks the
# two agree for the xarray installed.
SHADOWED = frozenset(
    """
    T all any apply argmax argmin argsort as_numpy assign assign_attrs assign_coords astype attrs bfill
    broadcast_equals broadcast_like chunk chunks chunksizes clip close coarsen combine_first compute conj
    conjugate convert_calendar coords copy count cumprod cumsum cumulative cumulative_integrate curvefit data
    data_vars diff differentiate dims dot drop drop_attrs drop_dims drop_duplicates drop_encoding drop_indexes
    drop_isel drop_sel drop_vars dropna dt dtype dtypes dump_to_store encoding equals eval expand_dims ffill
    fillna filter_by_attrs from_dataframe from_dict from_iris from_series get get_axis_num get_index groupby
    groupby_bins head identical idxmax idxmin imag indexes info integrate interp interp_calendar interp_like
    interpolate_na isel isin isnull item items keys load load_async load_store loc map map_blocks max mean
    median merge min name nbytes ndim notnull pad persist pipe plot polyfit prod quantile query rank real reduce
    reindex reindex_like rename rename_dims rename_vars reorder_levels resample reset_coords reset_encoding
    reset_index roll rolling rolling_exp round searchsorted sel set_close set_coords set_index set_xindex shape
    shift size sizes sortby squeeze stack std str sum swap_dims tail thin to_array to_dask_dataframe
    to_dataarray to_dataframe to_dataset to_dict to_index to_iris to_masked_array to_netcdf to_numpy to_pandas
    to_series to_stacked_array to_unstacked_dataset to_zarr transpose unify_chunks unstack update values var
    variable variables weighted where xindexes
    """.split()
)
VARIANTS = ("dataset", "rule", "dynamics")  # schema._variant_coords' prefixes, in its order
_VARIANT_PARAMETER = re.compile(r"parameter '(?P<name>[^']+)' of the (?P<variant>\w+) variant")


@dataclass(frozen=True)
class Coord:
    """A coordinate over the whole cube: its name as read, its dimensions, its values."""

    name: str
    dims: tuple[str, ...]
    values: np.ndarray


@dataclass(frozen=True)
class View:
    """A cube and a selection of it: ``index[d]`` are the positions kept along axis ``d``."""

    cube: Any  # amsweep.storage.cube.Cube
    source: tuple[str, dict | None]
    coords: dict[str, Coord]
    index: dict[str, np.ndarray]
    cells: np.ndarray | None = None  # over the whole (N, load) grid: the cells a load selection kept
    cells_dims: tuple[str, ...] = ()
    hidden: dict[str, list[str]] = field(default_factory=dict)

    @property
    def task_dims(self) -> tuple[str, ...]:
        return schema.task_dims_of(self.cube.sweep.load_axis)

    def values_of(self, name: str) -> np.ndarray:
        """A coordinate's values over the selection (one axis per dimension)."""
        c = self.coords[name]
        return c.values[np.ix_(*(self.index[d] for d in c.dims))] if c.dims else c.values


def open_view(path: str, storage_options: dict | None = None) -> View:
    """The whole cube (format 2 or 3), nothing read but its root document."""
    from amsweep.storage.cube import Cube

    cube = Cube.open(path, storage_options)
    coords: dict[str, Coord] = {}
    specs = schema.coordinates(cube.sweep)
    dims = {d for a in specs for d in a.dims if a.name == d}
    for a in specs:
        name = a.name
        found = _VARIANT_PARAMETER.fullmatch(str(a.attrs.get("long_name", "")))
        if found and name not in dims and name in SHADOWED:  # as storage.attributes.plain renames it
            param, variant = found["name"], found["variant"]
            name = f"{variant}_{param}" if param in SHADOWED else param
            while name in coords or name in [s.name for s in specs]:
                name += "_"
        coords[name] = Coord(name, tuple(a.dims), a.data)
    index = {d: np.arange(len(coords[d].values)) for d in (*schema.task_dims(cube.sweep), "noise")}
    return View(cube, (path, storage_options), coords, index)


def _split(text: str, sep: str, what: str) -> list[str]:
    """Split on ``sep`` outside brackets: labels amsweep makes, 'plm[lr=0.5,epochs=5]', contain
    ',', '=' and '|' inside their brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise QueryError(f"--where {what}: unbalanced ']' in {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise QueryError(f"--where {what}: unbalanced '[' in {text!r}")
    return parts + ["".join(current)]


def parse_where(text: str | None) -> dict[str, list[str]]:
    """'rule=plm|hebb,N=200' -> {'rule': ['plm', 'hebb'], 'N': ['200']}.

    Commas separate items and '|' separates values only outside brackets, so variant labels
    can be given as amsweep prints them: 'rule=plm[lr=0.5,epochs=5]|hebb'.
    """
    out: dict[str, list[str]] = {}
    for part in _split(text or "", ",", repr(text)):
        if not part.strip():
            continue
        if "=" not in part:
            raise QueryError(f"--where item {part.strip()!r}: expected KEY=VALUE (several values as A|B)")
        key, value = (x.strip() for x in part.split("=", 1))
        values = [v.strip() for v in _split(value, "|", key)]
        if not key or not all(values):
            raise QueryError(
                f"--where item {part.strip()!r}: expected KEY=VALUE with a non-empty key "
                "and values (several values as A|B)"
            )
        if key in out:
            raise QueryError(f"--where: key {key!r} given twice; give several values as {key}=A|B")
        out[key] = values
    return out


def resolve(view: Any, key: str) -> str:
    """The coordinate ``key`` names in ``view`` (a View or an xarray Dataset: anything with
    ``coords``): itself, or ``<variant>_<key>`` it was renamed to on reading."""
    if key in view.coords or key not in SHADOWED:
        return key
    for variant in VARIANTS:
        if f"{variant}_{key}" in view.coords:
            return f"{variant}_{key}"
    return key


def available(values: np.ndarray) -> str:
    """A coordinate's distinct values for an error message (NaN left out, 20 at most); shared with
    ``storage.query.select``."""
    seen = list(dict.fromkeys(v for v in values.ravel().tolist() if v == v))  # drop NaN
    return ", ".join(map(str, seen[:20])) + (f" ... ({len(seen)} values)" if len(seen) > 20 else "")


def typed(key: str, values: np.ndarray, raw: list[str]) -> list[Any]:
    """``--where`` values as the coordinate's type; an error names the key and the values it has
    (shared with ``storage.query.select``)."""
    kind = values.dtype.kind
    if kind not in "iuf":
        return raw
    typed = []
    for v in raw:
        try:
            typed.append(int(v) if kind in "iu" else float(v))
        except ValueError:
            raise QueryError(
                f"--where {key}={v}: {key} takes {'integers' if kind in 'iu' else 'numbers'}; "
                f"available: {available(values)}"
            ) from None
    return typed


def select(view: View, where: dict[str, list[str]]) -> View:
    """``storage.query.select`` on a view: dimensions by value (in the order given), per-variant
    coordinates by either name, the derived load by the cells it names (see ``_select_cells``)."""
    for key, raw in where.items():
        name = resolve(view, key)
        if name not in view.coords:
            raise QueryError(f"--where {key}: no such coordinate; available: {', '.join(sorted(view.coords))}")
        coord = view.coords[name]
        current = view.values_of(name)
        values = typed(key, current, raw)
        if len(coord.dims) != 1:
            view = _select_cells(view, key, coord, current, raw, values)
            continue
        dim = coord.dims[0]
        present = set(current.tolist())
        missing = [r for r, v in zip(raw, values) if v not in present]
        if missing:
            raise QueryError(f"--where {key}: no value(s) {', '.join(missing)}; available: {available(current)}")
        if name == dim:
            at = {v: i for i, v in reversed(list(enumerate(current.tolist())))}
            kept = np.array([at[v] for v in values], dtype=np.int64)
        else:
            kept = np.nonzero(np.isin(current, np.asarray(values, dtype=current.dtype)))[0]
        view = replace(view, index={**view.index, dim: view.index[dim][kept]})
    return view


def match_grid(key: str, grid: np.ndarray, raw: list[str], values: list[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Where a derived load over two axes (P over N, alpha) matches ``values``, and the rows and
    columns that hold a match: the one matching rule of both readers (this one and ``storage.query``)."""
    if grid.dtype.kind == "f":  # alpha = P / N is computed: match it as the decimal a user types
        hits = [np.isclose(grid, v, rtol=1e-9, atol=0.0) for v in values]
    else:
        hits = [grid == v for v in values]
    missing = [r for r, hit in zip(raw, hits) if not hit.any()]
    if missing:
        raise QueryError(f"--where {key}: no value(s) {', '.join(missing)}; available: {available(grid)}")
    match = np.logical_or.reduce(hits)
    keep = [np.nonzero(match.any(axis=tuple(j for j in range(match.ndim) if j != i)))[0] for i in range(match.ndim)]
    return match, keep


def _select_cells(view: View, key: str, coord: Coord, grid: np.ndarray, raw: list[str], values: list[Any]) -> View:
    """Keep the rows and columns of the 2-D load grid holding a match; the other cells of that box
    are left out of every table."""
    match, keep = match_grid(key, grid, raw, values)
    full = tuple(len(view.coords[d].values) for d in coord.dims)
    cells = np.ones(full, dtype=bool) if view.cells is None else view.cells.copy()
    rows, cols = (view.index[d] for d in coord.dims)
    cells[np.ix_(rows, cols)] &= match
    index = {**view.index, **{d: view.index[d][k] for d, k in zip(coord.dims, keep)}}
    return replace(view, index=index, cells=cells, cells_dims=coord.dims)


def graded(
    cube: Any,
    metric: str,
    status_read: tuple[np.ndarray, np.ndarray, np.ndarray],
    metric_read: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A metric over the whole task grid as both readers answer it (this one and
    ``storage.query.integrity``), from the (values, present, damaged) reads of status and metric:
    (values, NaN where a task is not done or its value is lost; lost, done tasks whose value is
    missing, damaged, or NaN where the metric is declared finite; orphans, tasks whose status is lost).
    An unreadable status counts as pending, as ``Cube.status()`` reads it."""
    stored, status_present, status_bad = status_read
    status = np.where(status_bad, PENDING, stored)
    values, present, damaged = metric_read
    values = values.astype(np.result_type(values.dtype, np.float32))  # float32 stays float32: NaN fits
    done = status == DONE
    lost = done & (~present | damaged)
    if METRICS[metric].always:  # declared finite for every done task: a NaN there is a lost value
        lost |= done & ~np.isfinite(values).all(axis=tuple(range(done.ndim, values.ndim)))
    values[damaged | ~present] = np.nan
    orphans = np.zeros_like(done)
    if cube.format >= 3:
        # every status chunk is stored from creation on: an absent or unreadable one was lost, and
        # whether its tasks were done is unknown (their data may be damaged too), so none of them
        # may be answered as "not run" (a pending one that holds data is a flush killed between
        # data and status: not lost)
        lost_status = ~status_present | status_bad
        if lost_status.any():  # rare: the mask walks every task (0.3 s at 10^5 cells)
            orphans = lost_status & ~schema.not_applicable_mask(cube.sweep)
    values[~done] = np.nan  # only done tasks have results
    return values, lost, orphans


def frame(view: View, metric: str, allow_missing: bool = False, writing: Any = None) -> Table:
    """One row per value of ``metric`` over done tasks of the selection, every coordinate a column
    (``storage.query.to_frame``): a done task whose value is lost, or a task whose status is lost,
    is a ``QueryError`` naming the tasks unless ``allow_missing``, which keeps lost values as NaN rows
    counted in a ``missing`` column. ``writing()`` says whether a live driver is mid-flush (then a
    lost status is data ahead of its status, not damage)."""
    if metric not in METRICS:
        raise QueryError(f"unknown metric {metric!r}; available: {', '.join(METRICS)}")
    cube = view.cube
    axes = view.task_dims
    if cube.format >= 2 and metric not in cube.arrays:
        raise QueryError(f"{metric}: this cube holds no such array (written by an amsweep before it)")
    values, lost, orphans = graded(cube, metric, _read(cube, "status"), _read(cube, metric))
    per_noise = values.ndim > len(axes)
    dims = (*axes, "noise") if per_noise else axes
    picks = np.ix_(*(view.index[d] for d in axes))
    values = values[picks]
    if per_noise:
        values = values[..., view.index["noise"]]
    lost, orphans = lost[picks], orphans[picks]
    if view.cells is not None and set(view.cells_dims) <= set(axes):
        inside = view.cells[np.ix_(*(view.index[d] for d in view.cells_dims))]
        if not inside.all():
            shape = [1] * len(axes)
            for d, n in zip(view.cells_dims, inside.shape):
                shape[axes.index(d)] = n
            inside = inside.reshape(shape)
            values = np.where(inside[..., None] if per_noise else inside, values, np.nan).astype(values.dtype)
            lost, orphans = lost & inside, orphans & inside
    if lost.any() and not allow_missing:
        n, names = _names(view, lost)
        raise QueryError(
            f"{metric} of {n} done task(s) of this selection is missing or damaged ({names}): "
            "`amsweep check --repair` then `amsweep run` recomputes it; --allow-missing shows it as "
            "NaN with a count"
        )
    if orphans.any() and not allow_missing and not (writing is not None and writing()):
        n, names = _names(view, orphans)
        raise QueryError(
            f"the status of {n} task(s) of this selection is lost ({names}; a status shard missing or "
            "damaged): `amsweep check --repair` restores it from their data where they are intact "
            "(the rest go back to pending); --allow-missing leaves them out"
        )
    flags = lost if lost.any() else None
    keep = ~np.isnan(values)
    if flags is not None:
        keep |= np.broadcast_to(flags[..., None], values.shape) if per_noise else flags
    position = np.unravel_index(np.flatnonzero(keep), values.shape)
    at = dict(zip(dims, position))
    table: Table = {d: view.values_of(d)[at[d]] for d in dims}
    extra = [c for name, c in view.coords.items() if name not in table and c.dims and set(c.dims) <= set(dims)]
    groups = list(dict.fromkeys(c.dims for c in extra))
    for c in sorted(extra, key=lambda c: groups.index(c.dims)):  # xarray's to_dataframe groups them by dims
        table[c.name] = view.values_of(c.name)[tuple(at[d] for d in c.dims)]
    table[metric] = values[position]
    if flags is not None:
        table[MISSING] = flags[position[: len(axes)]].astype(np.int64)
    hidden = view.hidden.get(metric, [])
    if hidden and "dataset" in table:
        shown = ~np.isin(table["dataset"], np.asarray(hidden, dtype=object))
        table = {k: v[shown] for k, v in table.items()}
    return table


def _read(cube: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, present, damaged) of a whole variable. Format 1 (read-only, one zarr chunk per task)
    through zarr-python, as ``storage.legacy`` reads it for status and upgrade; its columns follow
    today's coordinate names and order (xarray listed a format-1 store in the order the file system
    gave)."""
    if cube.format >= 2:
        return cube.read_variable(name)
    from amsweep.storage.legacy import read_array

    values, bad = read_array(cube, name, np.nan if name != "status" else PENDING)
    damaged = np.zeros(cube.sweep.shape, dtype=bool)
    for index in bad:
        damaged[index] = True
    return values, np.ones(cube.sweep.shape, dtype=bool), damaged


def _names(view: View, mask: np.ndarray, limit: int = 3) -> tuple[int, str]:
    """(count, 'task {...}; task {...}; ... N more') of the tasks ``mask`` marks, in task order."""
    hits = np.argwhere(mask)
    axes = [(d, view.values_of(d).tolist()) for d in view.task_dims]  # Python values, as printed before
    shown = "; ".join("task " + str({d: values[i] for (d, values), i in zip(axes, row)}) for row in hits[:limit])
    return len(hits), shown + (f"; ... {len(hits) - limit} more" if len(hits) > limit else "")
