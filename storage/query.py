"""Reading cubes: open lazily, select by coordinate values, export tidy tables.

Analysis reads cubes only through this module, so the on-disk layout can change in one place.
Values of tasks that are not done are masked to NaN on the way out: a half-finished sweep
never shows fill values as if they were results.

A table never answers as if nothing happened: a done task of the selection whose chunk is
missing or damaged, or a task that holds results but lost its "done" (a lost status shard), is
an error naming the tasks, unless the caller allows it (``allow_missing``); then the lost values
are NaN rows counted in a ``missing`` column, and means say how many seeds they are over.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.pipeline.errors import CubeError, QueryError
from amsweep.pipeline.metric_table import METRICS
from amsweep.storage import schema
from amsweep.storage.attributes import plain, resolve
from amsweep.storage.cube_view import available, graded, match_grid, typed  # shared by both readers
from amsweep.storage.cube_view import parse_where as parse_where  # the query's own, xarray-free
from amsweep.storage.schema import DONE

__all__ = [
    "done_values",
    "HIDDEN",
    "integrity",
    "load_axis",
    "load_couplings",
    "load_magnetisations",
    "magnetisations_by_task",
    "open_cube",
    "parse_where",
    "select",
    "stored_spec",
    "task_dims",
    "to_frame",
    "WHOLE_NOISE",
]


SOURCE = "amsweep_source"  # Dataset.encoding key: the cube a dataset was opened from
MISSING = "missing"  # column counting lost values of done tasks (only with allow_missing)
# Dataset.encoding key: {metric: [dataset labels]} whose values a caller masked out of ``ds`` (e.g.
# analysis.meaningful); ``to_frame`` reads values from the cube itself, so it drops them there too
HIDDEN = "amsweep_hidden"
# Dataset.encoding key: a boolean DataArray over two axes, the cells a selection on P (or on alpha of a
# P cube) kept inside its box of rows and columns; ``integrity`` masks what it reads from the cube by it
CELLS = "amsweep_cells"
# Dataset.encoding key: the dataset as selected but on every noise level, kept by a selection on noise so
# that a cell's class (analysis.classify, a hysteresis walking the noise axis) does not depend on which
# noise levels a --where keeps (attack24: rho 0.1 was 'memorizing' whole, 'elsewhere' selected alone)
WHOLE_NOISE = "amsweep_whole_noise"


def open_cube(path: str, storage_options: dict | None = None) -> xr.Dataset:
    """The cube as a lazy xarray.Dataset (status and every metric; coordinates loaded), with the
    attributes and coordinate names of ``storage.attributes`` (short labels, CF units, ``rule_clip``).

    Format 2 is read by amsweep's shard reader (``amsweep.storage.backend``); format 1 through zarr.
    """
    from amsweep.storage.backend import open_format2
    from amsweep.storage.cube import Cube

    cube = Cube.open(path, storage_options)
    if cube.format >= 2:
        ds = plain(open_format2(cube))
        ds.encoding[SOURCE] = (path, storage_options)  # for ``integrity``: presence is not in the values
        return ds
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3, storage_options=storage_options, chunks=None)
    for name in ("dataset", "rule", "dataset_kind", "rule_kind", "dynamics"):
        if name in ds.coords:
            ds = ds.assign_coords({name: (ds[name].dims, ds[name].values.astype(object), ds[name].attrs)})
    return plain(ds)


def load_axis(ds: xr.Dataset) -> str:
    """The cube's load dimension: ``alpha`` or ``P`` (a sweep has exactly one)."""
    return "alpha" if "alpha" in ds.dims else "P"


def task_dims(ds: xr.Dataset) -> list[str]:
    """Dimensions that identify a task (training run) of this cube; noise is an evaluation axis."""
    return list(schema.task_dims_of(load_axis(ds)))


def stored_spec(ds: xr.Dataset) -> dict[str, Any]:
    """The canonical spec stored in the cube: datasets and rules with their labels, kinds, entries."""
    if "amsweep_spec" not in ds.attrs:
        raise CubeError("this dataset holds no amsweep_spec attribute: open the cube with query.open_cube")
    return json.loads(ds.attrs["amsweep_spec"])


def select(ds: xr.Dataset, where: dict[str, list[str]]) -> xr.Dataset:
    """Keep the values named in ``where``, on dimensions, on per-variant coordinates (by the name
    they are read under or the name they are stored under: ``rule_clip`` or ``clip``) or on the
    derived load (``P`` of an alpha cube, ``alpha`` of a P cube; see ``_select_cells``).

    A selection on noise also keeps the same selection on every noise level (``WHOLE_NOISE``) for
    the class map, which is decided along the whole noise axis."""
    if not where:
        return ds
    base = ds.encoding.get(WHOLE_NOISE)
    out = _select(ds, where)
    if "noise" in where or base is not None:
        whole = _select(base if base is not None else ds, {k: v for k, v in where.items() if k != "noise"})
        whole = whole.copy(deep=False)
        whole.encoding.pop(WHOLE_NOISE, None)
        out = out.copy(deep=False)
        out.encoding[WHOLE_NOISE] = whole
    return out


def _select(ds: xr.Dataset, where: dict[str, list[str]]) -> xr.Dataset:
    for key, raw in where.items():
        name = resolve(ds, key)
        if name not in ds.coords:
            raise QueryError(f"--where {key}: no such coordinate; available: {', '.join(sorted(map(str, ds.coords)))}")
        coord = ds[name]
        values = typed(key, coord.values, raw)
        if coord.ndim != 1:
            ds = _select_cells(ds, key, coord, raw, values)
            continue
        dim = coord.dims[0]
        present = set(coord.values.tolist())
        missing = [r for r, v in zip(raw, values) if v not in present]
        if missing:
            raise QueryError(f"--where {key}: no value(s) {', '.join(missing)}; available: {available(coord.values)}")
        if name == dim:
            ds = ds.sel({dim: values})
        else:
            ds = ds.isel({dim: np.nonzero(np.isin(coord.values, values))[0]})
    return ds


def _select_cells(ds: xr.Dataset, key: str, coord: xr.DataArray, raw: list[str], values: list[Any]) -> xr.Dataset:
    """Select on a coordinate over two axes (P over N and alpha): keep the rows and columns holding a
    match, and where that box holds other cells too (P = 60 is alpha 0.3 at N = 200, 0.6 at N = 100),
    mask those in every metric and record the mask (``CELLS``) for ``integrity`` and ``to_frame``,
    which read values from the cube itself."""
    match, rows_cols = match_grid(key, coord.values, raw, values)
    keep = dict(zip(coord.dims, rows_cols))
    ds = ds.isel(keep)
    inside = xr.DataArray(match[np.ix_(*keep.values())], dims=coord.dims, coords={d: ds[d].values for d in coord.dims})
    previous = ds.encoding.get(CELLS)
    if previous is not None:
        inside = inside & previous
    if bool(inside.all()):
        return ds
    # dask before the mask: ``where`` on a lazily indexed variable would read every metric of the box now
    masked = ds.assign({n: v.chunk().where(inside) for n, v in ds.data_vars.items() if n != "status"})
    masked.encoding = {**ds.encoding, CELLS: inside}  # a copy: the caller's dataset keeps its own
    return masked


def done_values(ds: xr.Dataset, metric: str) -> xr.DataArray:
    """A metric with every task that is not done masked to NaN."""
    if metric not in METRICS:
        raise QueryError(f"unknown metric {metric!r}; available: {', '.join(METRICS)}")
    return ds[metric].where(ds["status"] == DONE)


def integrity(ds: xr.Dataset, metric: str) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray] | None:
    """(values, lost, orphans) over ``ds``'s selection, read from its cube without raising on damage
    (values NaN where a task is not done or its chunk is lost):
    ``lost`` marks done tasks whose chunk of ``metric`` is missing or damaged, ``orphans`` tasks whose
    status chunk is missing or unreadable (done or not is unknown; ``check --repair`` rebuilds it).
    None for a dataset not opened by ``open_cube`` from a sharded cube (presence is unknown there)."""
    source = ds.encoding.get(SOURCE)
    if source is None:
        return None
    from amsweep.storage.cube import Cube

    cube = Cube.open(*source)
    dims = [str(d) for d in ds[metric].dims if d != "noise"]
    axes = schema.task_dims_of(cube.sweep.load_axis)
    full = cube.sweep.axes

    def aligned(array: np.ndarray, extra: tuple[str, ...] = ()) -> xr.DataArray:
        coords = {d: np.asarray(full[d], dtype=object if d in ("dataset", "rule") else None) for d in axes}
        if extra:
            coords["noise"] = np.asarray(cube.sweep.noise)
        da = xr.DataArray(array, dims=list(axes) + list(extra), coords=coords)
        at = {d: ds[d].values for d in dims + list(extra) if not _same(ds[d].values, coords[d])}
        at.update({d: ds[d].values.item() for d in axes if d not in dims and d in ds.coords and ds[d].ndim == 0})
        return da.sel(at)  # the selection of ``ds`` (a scalar selection drops its dimension, as there)

    values, lost, orphans = graded(cube, metric, cube.read_variable("status"), cube.read_variable(metric))
    extra = ("noise",) if values.ndim > len(axes) else ()
    found = aligned(values, extra), aligned(lost), aligned(orphans)
    inside = ds.encoding.get(CELLS)
    if inside is None or not set(inside.dims) <= set(found[1].dims):
        return found
    return found[0].where(inside), found[1] & inside, found[2] & inside


def _same(selected: np.ndarray, full: np.ndarray) -> bool:
    """True when a selection kept a whole axis in order (the common case: no ``.sel`` needed)."""
    return selected.shape == full.shape and bool((selected == full).all())


def _names(mask: xr.DataArray, limit: int = 3) -> tuple[int, str]:
    """(count, 'task {...}; task {...}; ... N more') of the tasks ``mask`` marks."""
    rows = mask.to_dataframe(name="hit").reset_index()
    rows = rows[rows["hit"]].drop(columns="hit")
    shown = "; ".join(
        "task " + str({k: v.item() if hasattr(v, "item") else v for k, v in row.items()})
        for row in rows.head(limit).to_dict("records")
    )
    return len(rows), shown + (f"; ... {len(rows) - limit} more" if len(rows) > limit else "")


def to_frame(ds: xr.Dataset, metric: str, allow_missing: bool = False) -> pd.DataFrame:
    """Tidy table of one metric over done tasks: one row per value, every coordinate a column.

    A done task of the selection whose chunk is missing or damaged, or a task holding results
    that is not marked done, is a ``QueryError`` naming the tasks; with ``allow_missing`` the lost
    values are NaN rows with ``missing`` = 1 (the others 0) and tasks not marked done are left out.
    """
    if metric not in METRICS:
        raise QueryError(f"unknown metric {metric!r}; available: {', '.join(METRICS)}")
    found = integrity(ds, metric)
    lost_rows = None
    if found is None:
        da = done_values(ds, metric).load()
    else:
        values, lost, orphans = found
        if bool(lost.any()) and not allow_missing:
            n, names = _names(lost)
            raise QueryError(
                f"{metric} of {n} done task(s) of this selection is missing or damaged ({names}): "
                "`amsweep check --repair` then `amsweep run` recomputes it; --allow-missing shows it as "
                "NaN with a count"
            )
        if bool(orphans.any()) and not allow_missing and not _driver_writing(ds):
            n, names = _names(orphans)
            raise QueryError(
                f"the status of {n} task(s) of this selection is lost ({names}; a status shard missing or "
                "damaged): `amsweep check --repair` restores it from their data where they are intact "
                "(the rest go back to pending); --allow-missing leaves them out"
            )
        extra = {k: c for k, c in ds[metric].coords.items() if k not in values.dims}  # as ds[metric] has them
        da = values.rename(metric).assign_coords(extra)
        if bool(lost.any()):
            lost_rows = lost
    frame = da.to_dataframe(name=metric).reset_index()
    if lost_rows is not None:
        flags = lost_rows.astype(int).to_dataframe(name=MISSING).reset_index()
        frame = frame.merge(flags, on=list(lost_rows.dims), how="left")
    for name, coord in ds.coords.items():
        if name not in frame.columns and set(coord.dims) <= set(da.dims):
            frame = frame.merge(
                coord.to_dataframe().reset_index()[list(coord.dims) + [name]], on=list(coord.dims), how="left"
            )
    keep = frame[metric].notna()
    if lost_rows is not None:
        keep |= frame[MISSING] == 1
    hidden = ds.encoding.get(HIDDEN, {}).get(metric, [])
    if hidden and "dataset" in frame.columns:
        keep &= ~frame["dataset"].isin(hidden)
    return frame[keep].reset_index(drop=True)


def _driver_writing(ds: xr.Dataset) -> bool:
    """A live driver's flush writes data before status: results not yet marked done are in flight."""
    from amsweep.storage.check import driver_writing
    from amsweep.storage.objects import objects_at

    return driver_writing(objects_at(*ds.encoding[SOURCE]))


def load_couplings(path: str, coords: dict[str, Any], storage_options: dict | None = None) -> np.ndarray:
    """Couplings (or memories) of the task at ``coords`` (dataset, N, alpha|P, rule, seed values),
    from a cube whose spec set ``[retrieval] store_couplings = true``."""
    cube, index = _task_at(path, coords, storage_options)
    return cube.couplings(index)


def load_magnetisations(path: str, coords: dict[str, Any], storage_options: dict | None = None) -> np.ndarray:
    """Thermal states of the training starts of the task at ``coords``: float32 (noise, starts, N),
    <s_i> of a thermal dynamics (else the final states), from a cube whose spec set
    ``[retrieval] store_magnetisations = true``. Start b is training example b, corrupted."""
    cube, index = _task_at(path, coords, storage_options)
    return cube.magnetisations(index)


def magnetisations_by_task(path: str, storage_options: dict | None = None) -> Iterator[tuple[Any, np.ndarray]]:
    """(Task, thermal states) of every done task, the cube opened once (see ``load_magnetisations``)."""
    from amsweep.storage.cube import Cube

    cube = Cube.open(path, storage_options, mode="r")
    status = cube.status()
    for task in cube.sweep.tasks():
        if status[task.index] == DONE:
            yield task, cube.magnetisations(task.index)


def _task_at(path: str, coords: dict[str, Any], storage_options: dict | None) -> tuple[Any, tuple[int, ...]]:
    from amsweep.storage.cube import Cube

    cube = Cube.open(path, storage_options, mode="r")
    return cube, cube.sweep.index_at(coords)
