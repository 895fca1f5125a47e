"""Issue 26's reads and writes of a 10^5-cell cube, against the peers it names.

Reads: one per-noise metric of a format-3 cube, whole, by ``xr.open_zarr(CUBE)[m].values``,
zarr-python's ``zarr.open_array``, tensorstore (an independent Zarr v3 implementation) and
``amsweep.open``; each must agree with the others and take <= 1 s, on local disk and on moto.

Writes: the same synthetic results in flushes of 2,000 (what a 1,000-cells/s fan-out hands a
driver every two seconds), by amsweep's writer (``Cube.write``, hand-encoded shards with an
identity header), by plain xarray ``to_zarr(region=...)`` into plain chunks of one seed row, and
by zarr-python's own sharding codec with amsweep's shard and inner-chunk shapes. Both peers use
the crc32c codec (as amsweep does) and write each flush's seed rows one region at a time, as a
driver without amsweep would; the writers alternate within each repeat. The ratio rows are a
peer's seconds over amsweep's: above 1, the hand-written shard encoder is the faster.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks._harness import Row, interleaved, ms, ratio_row, skipped
from benchmarks.cube import FLUSH, _row, results, sweep, write_all
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.outcomes import CellResult

METRIC = "m_train"
MOTO_CELLS = 20_000  # 10 flushes  # per noise: (dataset, N, alpha, rule, seed, noise)

Writer = Callable[[str, spec_mod.Sweep, list[CellResult]], float]


# ---- readers ---------------------------------------------------------------------------------
def _tensorstore_kvstore(path: str) -> dict[str, Any]:
    if not path.startswith("s3://"):
        return {"driver": "file", "path": f"{path}/{METRIC}/"}
    bucket, _, key = path[len("s3://") :].partition("/")
    return {
        "driver": "s3",
        "bucket": bucket,
        "path": f"{key}/{METRIC}/",
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
        "aws_region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


def readers(path: str) -> dict[str, Callable[[], np.ndarray]]:
    """Each reader's whole-metric read of the cube at ``path`` (local or s3://)."""
    import xarray as xr
    import zarr

    import amsweep

    def tensorstore() -> np.ndarray:
        import tensorstore as ts

        spec = {"driver": "zarr3", "kvstore": _tensorstore_kvstore(path)}
        return ts.open(spec, read=True).result().read().result()

    out = {
        "xr.open_zarr": lambda: xr.open_zarr(path)[METRIC].values,
        "zarr-python": lambda: zarr.open_array(f"{path}/{METRIC}", mode="r")[...],
        "tensorstore": tensorstore,
        "amsweep.open": lambda: amsweep.open(path)[METRIC].values,
    }
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        del out["tensorstore"]
    return out


def read_rows(path: str, where: str, n: int, repeats: int) -> list[Row]:
    """Each reader's seconds (alternated, order reversed every other repeat); every reader must
    return the same values, NaN for NaN, or the benchmark stops."""
    fns = readers(path)
    times: dict[str, list[float]] = {name: [] for name in fns}
    want: np.ndarray | None = None
    for r in range(repeats):
        for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            t0 = time.perf_counter()
            got = np.asarray(fns[name]())
            times[name].append(time.perf_counter() - t0)
            if want is None:
                want = got
            np.testing.assert_array_equal(got, want, err_msg=f"{name} read other values than the other readers")
    import xarray as xr

    chunks = int(np.prod([len(c) for c in xr.open_zarr(path)[METRIC].chunks or ()]))
    detail = {**_READ_DETAIL, "xr.open_zarr": f"{_READ_DETAIL['xr.open_zarr']}, {chunks} dask chunks"}
    rows = [
        _row(f"read one metric, {n:,} cells, {where}: {name} (s)", t, "<=", 1.0, detail[name])
        for name, t in times.items()
    ]
    if "tensorstore" not in fns:
        rows.append(skipped(f"read one metric, {where}: tensorstore (s)", "<= 1", "tensorstore is not installed"))
    return rows


_READ_DETAIL = {
    "xr.open_zarr": f"xr.open_zarr(CUBE)['{METRIC}'].values (open + read)",
    "zarr-python": f"zarr.open_array(CUBE/{METRIC})[...]",
    "tensorstore": f"ts.open(zarr3 CUBE/{METRIC}).read()",
    "amsweep.open": f"amsweep.open(CUBE)['{METRIC}'].values (open + read)",
}


# ---- writers ---------------------------------------------------------------------------------
def _rows_of(flush: list[CellResult]) -> list[tuple[tuple[slice, ...], list[CellResult]]]:
    """A flush's results as seed-row regions: (box over the task grid, its results in seed order).
    Tasks run in C order, so within a flush each row's seeds are contiguous."""
    groups: dict[tuple[int, ...], list[CellResult]] = {}
    for r in flush:
        groups.setdefault(tuple(r.index[:-1]), []).append(r)
    out = []
    for row, rs in groups.items():
        lo, hi = rs[0].index[-1], rs[-1].index[-1] + 1
        assert hi - lo == len(rs), "a flush's seeds of one row are contiguous"
        out.append((tuple(slice(i, i + 1) for i in row) + (slice(lo, hi),), rs))
    return out


def _values(rs: list[CellResult], name: str, box: tuple[slice, ...]) -> np.ndarray:
    """One variable's values of a seed-row region, shaped like the region (noise last)."""
    shape = tuple(b.stop - b.start for b in box)
    if name == "status":
        return np.ones(shape, dtype=np.int8)  # done
    m = METRICS[name]
    stacked = np.asarray([r.values[name] for r in rs], dtype=m.dtype)
    return stacked.reshape(shape + stacked.shape[1:])


def _plain_layout(s: spec_mod.Sweep) -> list[tuple[str, tuple[str, ...], np.dtype, Any]]:
    """(name, dims, dtype, fill) of status and every metric, as the cube declares them."""
    from amsweep.storage import schema

    coords = schema.coordinates(s)
    return [(v.name, tuple(v.dims), np.dtype(v.dtype), v.fill) for v in schema.variables(s, [c.name for c in coords])]


def _coords(s: spec_mod.Sweep) -> dict[str, tuple[str, np.ndarray]]:
    from amsweep.storage.schema import task_dims

    dims = task_dims(s) + ("noise",)
    values = [[d.label for d in s.datasets], s.N_values, s.load_values, [r.label for r in s.rules], s.seeds, s.noise]
    return {d: (d, np.asarray(v)) for d, v in zip(dims, values)}


def xarray_region_write(path: str, s: spec_mod.Sweep, rs: list[CellResult]) -> float:
    """Seconds to create a plain xarray Zarr store (chunks of one seed row, crc32c) and write the
    results in flushes of FLUSH, one ``to_zarr(region=...)`` per seed row of a flush."""
    import dask.array as da
    import xarray as xr
    from zarr.codecs import Crc32cCodec

    t0 = time.perf_counter()
    layout = _plain_layout(s)
    coords = _coords(s)
    dims_all = list(coords)
    row = (1,) * (len(s.shape) - 1) + (s.shape[-1],)
    data_vars, encoding = {}, {}
    for name, dims, dtype, fill in layout:
        shape = tuple(len(coords[d][1]) for d in dims)
        chunks = row + shape[len(row) :]
        data_vars[name] = (dims, da.full(shape, fill, dtype=dtype, chunks=chunks))
        encoding[name] = {"chunks": chunks, "compressors": [Crc32cCodec()], "fill_value": fill}
    template = xr.Dataset(data_vars, coords={d: v for d, v in coords.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's note on fixed-width strings
        template.to_zarr(path, compute=False, zarr_format=3, encoding=encoding, mode="w")
        for i in range(0, len(rs), FLUSH):
            for box, group in _rows_of(rs[i : i + FLUSH]):
                region = dict(zip(dims_all, box))
                sub = xr.Dataset({name: (dims, _values(group, name, box)) for name, dims, _, _ in layout})
                sub.to_zarr(path, region=region, zarr_format=3, consolidated=False)
    return time.perf_counter() - t0


def zarr_sharding_write(path: str, s: spec_mod.Sweep, rs: list[CellResult]) -> float:
    """Seconds to create every variable with zarr-python's sharding codec (amsweep's shard and
    seed-row inner-chunk shapes, bytes + crc32c) and write the results in flushes of FLUSH, one
    ``array[region] = values`` per variable and seed row of a flush (zarr rewrites the shard)."""
    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec

    from amsweep.storage.shards import choose_block_shape, choose_shard_shape

    t0 = time.perf_counter()
    shard = choose_shard_shape(s.shape)
    block = choose_block_shape(shard)
    noise = (len(s.noise),)
    group = zarr.open_group(path, mode="w", zarr_format=3)
    arrays = {}
    for name, dims, dtype, fill in _plain_layout(s):
        extra = noise if "noise" in dims else ()
        arrays[name] = group.create_array(
            name,
            shape=s.shape + extra,
            chunks=block + extra,
            shards=shard + extra,
            dtype=dtype,
            fill_value=fill,
            dimension_names=list(dims),
            serializer=BytesCodec(),
            compressors=[Crc32cCodec()],
        )
    for i in range(0, len(rs), FLUSH):
        for box, group_rs in _rows_of(rs[i : i + FLUSH]):
            for name, arr in arrays.items():
                arr[box] = _values(group_rs, name, box)
    return time.perf_counter() - t0


WRITERS: dict[str, Writer] = {
    "amsweep": write_all,
    "xarray to_zarr(region=)": xarray_region_write,
    "zarr sharding codec": zarr_sharding_write,
}


def _same_metric(a: str, b: str) -> None:
    """The peer's store holds amsweep's values of METRIC (so the writers did the same work)."""
    import zarr

    np.testing.assert_array_equal(
        zarr.open_array(f"{a}/{METRIC}", mode="r")[...], zarr.open_array(f"{b}/{METRIC}", mode="r")[...]
    )


def write_rows(
    place: Callable[[str], str], where: str, s: spec_mod.Sweep, rs: list[CellResult], repeats: int
) -> list[Row]:
    """Each writer's cells/s and each peer's time over amsweep's, alternated (order reversed every
    other repeat); the first repeat also checks that every store holds amsweep's values."""
    n = len(rs)
    times: dict[str, list[float]] = {name: [] for name in WRITERS}
    for r in range(repeats):
        paths = {}
        for name in list(WRITERS) if r % 2 == 0 else list(WRITERS)[::-1]:
            paths[name] = place(f"{name.split()[0]}-{r}")
            times[name].append(WRITERS[name](paths[name], s, rs))
        if r == 0:
            for name in WRITERS:
                _same_metric(paths["amsweep"], paths[name])
    rows = [
        _row(
            f"write {n:,} cells, {where}: {name} (cells/s)",
            [n / t for t in times[name]],
            ">=",
            0,
            f"flushes of {FLUSH}, status + {len(METRICS)} metrics, cube creation included",
        )
        for name in WRITERS
    ]
    for peer in list(WRITERS)[1:]:
        rows.append(
            ratio_row(
                f"write, {where}: {peer} time / amsweep's",
                times[peer],
                times["amsweep"],
                ">=",
                1.0,
                "above 1: amsweep's writer is the faster",
            )
        )
    return rows


def encode_rows(s: spec_mod.Sweep, repeats: int) -> list[Row]:
    """Encoding alone, in memory: one full shard of a per-noise metric by amsweep's
    ``ShardGeometry.encode`` (identity header included) and by zarr-python's sharding codec (a
    whole-shard write into a MemoryStore), the same bytes layout; 20 shards per timing."""
    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec

    from amsweep.storage.shards import ShardGeometry, ShardIdentity, choose_block_shape, choose_shard_shape

    shard = choose_shard_shape(s.shape)
    block = choose_block_shape(shard)
    inner = (len(s.noise),)
    geometry = ShardGeometry(shard, inner, np.dtype("float32"), block, headed=True)
    values = np.random.default_rng(0).random(shard + inner, dtype=np.float32)
    present = np.ones(shard, dtype=bool)
    ident = ShardIdentity("bench", METRIC, geometry.key(METRIC, (0,) * len(shard)))
    arr = zarr.create_array(
        zarr.storage.MemoryStore(),
        shape=shard + inner,
        chunks=block + inner,
        shards=shard + inner,
        dtype="float32",
        fill_value=np.nan,
        serializer=BytesCodec(),
        compressors=[Crc32cCodec()],
    )

    def ours() -> None:
        for _ in range(20):
            geometry.encode(values, present, ident)

    def zarrs() -> None:
        for _ in range(20):
            arr[...] = values

    times = interleaved({"amsweep": ours, "zarr": zarrs}, repeats)
    tasks = geometry.tasks
    return [
        ratio_row(
            f"encode one {tasks:,}-task shard: zarr's sharding codec / amsweep's",
            times["zarr"],
            times["amsweep"],
            ">=",
            1.0,
            f"amsweep {ms([t / 20 for t in times['amsweep']])}, zarr {ms([t / 20 for t in times['zarr']])} "
            f"per shard ({geometry.n_chunks} inner chunks of {math.prod(block)} tasks x {inner[0]} noise)",
        )
    ]


# ---- run -------------------------------------------------------------------------------------
def tiny_sweep() -> spec_mod.Sweep:
    """6 seed rows of 100 seeds (600 cells): the code paths in seconds, the peers included."""
    return spec_mod.from_dict(
        {
            "name": "reads_tiny",
            "seeds": 100,
            "noise": [0.0, 0.1, 0.2],
            "datasets": {"random": {"N": [32], "alpha": [0.1, 0.2]}},
            "rules": {"hebb": {}, "plm": {"lr": [0.5, 1.0]}},
        }
    )


def run(tiny: bool = False, repeats: int = 3) -> list[Row]:
    s = tiny_sweep() if tiny else sweep(seeds=1667)
    rs = results(s)
    n = len(rs)
    folder = Path(tempfile.mkdtemp(prefix="amsweep-reads-bench-"))
    rows: list[Row] = []
    try:
        if not tiny:  # imports, numba and zarr's first calls, outside the timed rows
            warm = tiny_sweep()
            for name, writer in WRITERS.items():
                writer(str(folder / f"warm-{name.split()[0]}"), warm, results(warm))
        cube = str(folder / "cube.zarr")
        write_all(cube, s, rs)
        rows += read_rows(cube, "local", n, repeats)
        rows += write_rows(lambda name: str(folder / f"{name}.zarr"), "local", s, rs, repeats)
        rows += encode_rows(s, repeats)
        rows += _on_moto(s, rs, max(1, repeats - 1), peers=not tiny)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _on_moto(s: spec_mod.Sweep, rs: list[CellResult], repeats: int, peers: bool = True) -> list[Row]:
    """Reads of a whole cube; writes compared on the first MOTO_CELLS results (a peer's region
    writes take minutes per 10^5 cells on moto), the same cells for every writer. ``peers``
    False (--tiny): amsweep's write only (creating a peer's ~36 arrays on moto alone takes ~20 s)."""
    from benchmarks._moto import moto_server

    with moto_server(buckets=("bench",)):
        run_id = uuid.uuid4().hex[:6]
        cube = f"s3://bench/{run_id}-cube.zarr"
        seconds = write_all(cube, s, rs)
        rows = read_rows(cube, "moto S3", len(rs), repeats + 1)
        whole = f"write {len(rs):,} cells, moto S3: amsweep, whole cube (cells/s)"
        rows.append(_row(whole, [len(rs) / seconds], ">=", 0, "the cube the reads above read, once"))
        if not peers:
            return rows
        part = rs[:MOTO_CELLS]
        place = lambda name: f"s3://bench/{run_id}-{name}.zarr"  # noqa: E731
        return rows + write_rows(place, "moto S3", s, part, repeats)
