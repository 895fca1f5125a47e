"""Cube formats 2 and 3: Zarr-compatible shards, object counts, xarray, schema evolution, format 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.metric_table import METRICS
from amsweep.sweeps.runner import run
from amsweep.storage import zarr_documents
from amsweep.storage.check import check, repair
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, FAILED
from amsweep.storage.query import open_cube, to_frame
from amsweep.storage.shards import (
    MAGIC,
    ShardIdentity,
    ShardGeometry,
    choose_block_shape,
    choose_shard_shape,
    crc32c_rows,
)
from tests.conftest import assert_same_cube

FORMAT1 = Path(__file__).parent / "data" / "format1_tiny.zarr"


def test_crc32c_matches_an_independent_implementation():
    rows = np.random.default_rng(3).integers(0, 256, size=(64, 29), dtype=np.uint8)
    assert [int(c) for c in crc32c_rows(rows)] == [google_crc32c.value(r.tobytes()) for r in rows]
    assert int(crc32c_rows(np.frombuffer(b"123456789", np.uint8)[None])[0]) == 0xE3069283  # the check value


@pytest.mark.parametrize("inner,dtype,fill", [((3,), "f4", np.nan), ((), "i1", 0)])
@pytest.mark.parametrize("fmt", [2, 3])
def test_shards_are_read_and_written_by_zarr_itself(tmp_path, inner, dtype, fill, fmt):
    """Our encoder's bytes decode with zarr-python, and zarr-python's decode with ours: format 2
    (one-task inner chunks) and format 3 (seed-row blocks, identity header zarr never reads)."""
    shape, shard = (2, 3, 5, 2, 70), (1, 2, 5, 2, 40)
    block = (1,) * 5 if fmt == 2 else choose_block_shape(shard)
    assert fmt == 2 or block == (1, 2, 1, 2, 40)  # 5 inner chunks per shard
    arr = zarr.create_array(
        str(tmp_path / "a"),
        shape=shape + inner,
        chunks=block + inner,
        shards=shard + inner,
        dtype=dtype,
        fill_value=fill,
        serializer=BytesCodec(),
        compressors=[Crc32cCodec()],
        config={"write_empty_chunks": True},
    )
    lay = ShardGeometry(shard, inner, np.dtype(dtype), block, headed=fmt == 3)
    ident = ShardIdentity("0" * 32, "a", lay.key("a", (0, 1, 0, 0, 1))) if fmt == 3 else None
    rng = np.random.default_rng(1)
    values, present = lay.empty(fill)
    values[...] = rng.integers(0, 100, values.shape)
    present[...] = rng.random(present.shape) < 0.6
    if fmt == 3:
        present[:, :, [0, 3, 4]] = False  # inner chunks of loads 0, 3 and 4 absent
    key = tmp_path / "a" / lay.key("", (0, 1, 0, 0, 1)).lstrip("/")
    key.parent.mkdir(parents=True, exist_ok=True)
    data = lay.encode(values, present, ident)
    assert data is not None and (data[:8] == MAGIC) == (fmt == 3)
    key.write_bytes(data)
    got, have, damaged = lay.decode(data, fill, ident)
    assert not damaged.any() and have[present].all() and (fmt == 3 or (have == present).all())
    np.testing.assert_array_equal(got[present], values[present])
    if fmt == 3:
        assert 0 < have.sum() < have.size  # some inner chunks absent, as zarr sees them
    box, clip = lay.region((0, 1, 0, 0, 1), shape)
    expected = np.where(have.reshape(have.shape + (1,) * len(inner)), got, fill)[clip]
    np.testing.assert_array_equal(arr[box], expected)
    written = rng.integers(0, 100, shape + inner).astype(dtype)
    arr[...] = written
    plain = ShardGeometry(shard, inner, np.dtype(dtype), block)  # zarr writes no identity header
    got, have, damaged = plain.decode((tmp_path / "a" / lay.key("", (1, 0, 0, 0, 0)).lstrip("/")).read_bytes(), fill)
    np.testing.assert_array_equal(got[:, :2, :, :, :40], written[1:2, 0:2, :, :, 0:40])
    assert have.all() and not damaged.any()


def test_shard_shape_covers_trailing_axes_within_the_budget():
    assert choose_shard_shape((1, 10, 20, 5, 100)) == (1, 1, 8, 5, 100)
    assert choose_shard_shape((2, 1, 3, 2, 3)) == (2, 1, 3, 2, 3)
    assert choose_shard_shape((1, 1, 1, 1, 100_000)) == (1, 1, 1, 1, 4096)


def fill_with_synthetic_results(cube: Cube, per_flush: int = 5000) -> None:
    """Write a value for every task (fast: no cell runs), as a driver's flushes would."""
    n_noise = len(cube.sweep.noise)
    batch = []
    for t in cube.sweep.tasks():
        x = np.float32(sum(t.index) + 0.25)
        values = {n: (np.full(n_noise, x, np.float32) if m.per_noise else x) for n, m in METRICS.items()}
        batch.append(CellResult(t.index, values))
        if len(batch) == per_flush:
            cube.write(batch)
            batch = []
    cube.write(batch)


def big_spec(seeds: int) -> spec_mod.Sweep:
    return spec_mod.from_dict(
        {
            "name": "big",
            "seeds": seeds,
            "noise": [0.0, 0.1, 0.2],
            "datasets": {"random": {"N": [32, 64], "alpha": [0.1, 0.2, 0.3, 0.4, 0.5]}},
            "rules": {"hebb": {}, "plm": {"lr": [0.5, 1.0]}},
        }
    )


def test_objects_grow_with_shards_not_cells(tmp_path):
    sweep = big_spec(seeds=400)  # 2 x 5 x 3 x 400 = 12,000 tasks
    path = tmp_path / "big.zarr"
    fill_with_synthetic_results(Cube.create_or_open(str(path), sweep))
    files = [p for p in path.rglob("*") if p.is_file()]
    shards = int(np.prod(Cube.open(str(path)).variable("status").geometry.grid(sweep.shape)))
    assert shards == 4
    assert len(files) <= (1 + len(METRICS)) * shards + 60  # + array documents, coordinates, per-task records
    ds = open_cube(str(path))
    assert float(ds["m_train"].isel(dataset=0, N=1, alpha=2, rule=1, seed=7, noise=0)) == 0 + 1 + 2 + 1 + 7 + 0.25
    assert check(Cube.open(str(path))).ok


def test_xarray_opens_the_cube_without_warnings_and_with_shard_chunks(tmp_path, small_sweep):
    path = str(tmp_path / "x.zarr")
    run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = xr.open_zarr(path)
        auto = xr.open_zarr(path, chunks="auto")
        ours = xr.open_dataset(path, engine="amsweep", chunks={})
    for name in ["status", *METRICS]:
        np.testing.assert_array_equal(plain[name].values, open_cube(path)[name].values)
        np.testing.assert_array_equal(auto[name].values, ours[name].values)
    shard = Cube.open(path).variable("m_train").geometry.shard
    assert ours["m_train"].data.chunks[:5] == tuple((s,) for s in shard)
    assert list(auto["rule"].values) == ["hebb", "plm"]
    for name, var in plain.variables.items():
        assert "long_name" in var.attrs and "units" in var.attrs, name


def test_cube_records_its_provenance(tmp_path, small_sweep):
    path = str(tmp_path / "p.zarr")
    run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False)
    attrs = Cube.open(path).attrs
    assert attrs["amsweep_format"] == 3 and attrs["amsweep_version"]
    assert len(attrs["amsweep_cube_id"]) == 32 and int(attrs["amsweep_cube_id"], 16) >= 0  # uuid4 hex
    if (Path(__file__).parents[1] / ".git").exists():
        assert len(attrs["source_commit"]) == 40 and isinstance(attrs["source_dirty"], bool)
    (record,) = [json.loads(p.read_text()) for p in Path(path, "_amsweep", "runs").glob("*.json")]
    assert record["host"] and "numpy" in record["versions"] and "blas" in record


def test_a_cube_missing_a_newer_metric_opens_and_the_next_run_adds_it(tmp_path, small_raw):
    sweep = spec_mod.from_dict(small_raw)
    path = str(tmp_path / "old.zarr")
    run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    # Make it look written by an amsweep that did not have `random_converged` yet.
    cube = Cube.open(path)
    arrays = {k: v for k, v in cube.arrays.items() if k != "random_converged"}
    Path(path, "zarr.json").write_bytes(zarr_documents.root_document(cube.attrs, arrays))
    shutil.rmtree(Path(path, "random_converged"))
    ds = open_cube(path)
    assert "random_converged" not in ds and "m_train" in ds
    assert check(Cube.open(path)).ok
    small_raw["seeds"] = 3  # the next run (here an extension) adds the array
    grown = run(Cube.create_or_open(path, spec_mod.from_dict(small_raw)), SerialExecutor(), progress=False)
    assert grown.done == 4
    ds = open_cube(path)
    values = ds["random_converged"].values
    assert np.isnan(values[..., :2]).all() and np.isfinite(values[..., 2]).all()
    assert check(Cube.open(path)).ok


def test_check_reports_nan_only_where_the_declaration_says_every_done_task_has_a_value(tmp_path, small_sweep):
    """success_train is a fraction of counted starts (declared ``always``): NaN there is damage that
    ``--repair`` gives back to the next run. m_test is NaN wherever a task has no test examples."""
    path = str(tmp_path / "n.zarr")
    with Cube.create_or_open(path, small_sweep) as cube:
        fill_with_synthetic_results(cube)
        first, second = [t.index for t in small_sweep.tasks()][:2]
        n_noise = len(small_sweep.noise)
        for index, name in ((first, "success_train"), (second, "m_test")):
            values = {
                n: (np.full(n_noise, 0.5, np.float32) if m.per_noise else np.float32(0.5)) for n, m in METRICS.items()
            }
            values[name] = np.full(n_noise, np.nan, np.float32)
            cube.write([CellResult(index, values)])
    assert [m.always for m in (METRICS["success_train"], METRICS["m_test"])] == [True, False]
    with Cube.open(path, mode="r+") as cube:
        report = check(cube)
        assert report.damaged == [first]
        assert report.problems == [
            f"task {cube.coords_of(first)}: success_train is NaN, but every done task has a value of it"
        ]
        repair(cube, report)
        assert cube.status()[first] != DONE and cube.status()[second] == DONE


def test_format_1_cubes_are_read_and_refused_for_writing_with_the_upgrade_command(tmp_path):
    path = tmp_path / "f1.zarr"
    shutil.copytree(FORMAT1, path)
    cube = Cube.open(str(path))
    assert cube.format == 1
    status = cube.status()
    assert (status == DONE).sum() == 17 and (status == FAILED).sum() == 1
    assert [f["index"] for f in cube.failures()] == [[0, 0, 1, 2, 1]]
    before = to_frame(open_cube(str(path)), "m_train")
    from amsweep.analysis.report import write_report

    report = Path(write_report(str(path), str(tmp_path / "report")))
    assert report.exists() and "format1_fixture" in report.read_text()
    with pytest.raises(CubeError, match=f"amsweep upgrade {path}"):
        Cube.create_or_open(str(path), cube.sweep)
    out = subprocess.run(
        [sys.executable, "-m", "amsweep.sweeps.cli", "upgrade", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "upgraded to format 3 (17 done" in out.stdout
    cube = Cube.open(str(path))
    assert cube.format == 3 and check(cube).ok
    assert [d.label for d in cube.sweep.datasets] == ["big", "random"]  # canonical order: by label
    np.testing.assert_array_equal(cube.status(), status[[1, 0]])
    assert [f["index"] for f in cube.failures()] == [[1, 0, 1, 2, 1]]
    after = to_frame(open_cube(str(path)), "m_train")
    keys = ["dataset", "N", "alpha", "rule", "seed", "noise"]
    before, after = (f.sort_values(keys).reset_index(drop=True) for f in (before, after))
    assert len(after) == len(before) > 0
    np.testing.assert_array_equal(before["m_train"].values, after["m_train"].values)
    assert cube.couplings((1, 0, 0, 0, 0)).shape == (16, 16)
    assert not any(p.name == "zarr.json" for p in Path(path, "_amsweep").rglob("*"))  # format-1 side group gone


def test_upgrade_killed_at_any_phase_finishes_on_the_next_try(tmp_path):
    from amsweep.storage.upgrade import upgrade
    from tests.test_cube_crash import killed_at_write

    reference = tmp_path / "ref.zarr"
    shutil.copytree(FORMAT1, reference)
    upgrade(str(reference))
    writes = killed_at_write(
        None,
        lambda: upgrade(str(tmp_path / "count.zarr")),
        setup=lambda: shutil.copytree(FORMAT1, tmp_path / "count.zarr"),
    )
    assert writes > 50
    for k in range(1, writes + 1, max(1, writes // 12)):  # a dozen kill points across the three phases
        path = tmp_path / f"k{k}.zarr"
        shutil.copytree(FORMAT1, path)
        assert killed_at_write(k, lambda: upgrade(str(path))) == -9
        if Path(path, "_amsweep/stage/READY.json").exists() or Cube.open(str(path)).format == 1:
            upgrade(str(path))  # else: killed while clearing leftovers, already a format-2 cube
        assert check(Cube.open(str(path))).ok
        assert_same_cube(str(path), str(reference))


def test_the_same_sweep_in_format_2_equals_format_1_value_for_value(tmp_path):
    """The fixture's sweep, rerun now into a format-2 cube, has the values the last format-1
    amsweep wrote (storage changes nothing; the hand-made failure aside)."""
    old = Cube.open(str(FORMAT1))
    path = str(tmp_path / "again.zarr")
    run(Cube.create_or_open(path, old.sweep), SerialExecutor(), progress=False)
    new, before = open_cube(path), open_cube(str(FORMAT1))
    assert new["dataset"].values.tolist() == ["big", "random"]  # canonical order; format 1 kept the spec's
    before = before.sel(dataset=new["dataset"].values)
    for name, metric in METRICS.items():
        if metric.deterministic and name in before:  # metrics added since are absent from format 1
            np.testing.assert_array_equal(new[name].values, before[name].values, err_msg=name)
    status = before["status"].values
    status[1, 0, 1, 2, 1] = DONE  # recorded as failed by hand in the fixture; it computes fine
    np.testing.assert_array_equal(new["status"].values, status)
