"""Canonical axis order (issue 21, item 3): every axis sorted whatever order a spec or an extension
gave, so label slices and group-bys are right, and the spec hash depends on content only.

On 4b6d03b an extension appended values (alpha [0.05, 0.1, 0.2, 0.4] + 0.3, 0.6 was stored as
[0.05, 0.1, 0.2, 0.4, 0.3, 0.6]) and ``sel(alpha=slice(0.05, 0.2))`` returned the 0.3 cells too.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from amsweep.storage.query import open_cube
from tests.conftest import assert_same_cube, cube_values

BASE = {
    "name": "order",
    "root_seed": 5,
    "seeds": [0, 2],
    "noise": [0.0, 0.2],
    "P_test": 4,
    "retrieval": {"train_starts": 4, "test_starts": 4, "random_starts": 2, "store_couplings": True},
    "datasets": {"random": {"N": [16, 24], "alpha": [0.05, 0.1, 0.2, 0.4]}},
    "rules": {"hebb": {}},
}


def grown_raw() -> dict:
    raw = copy.deepcopy(BASE)
    raw["seeds"] = [0, 2, 1]
    raw["datasets"]["random"].update(N=[16, 24, 20], alpha=[0.05, 0.1, 0.2, 0.4, 0.3, 0.6])
    return raw


def sweep(raw: dict) -> spec_mod.Sweep:
    return spec_mod.from_dict(copy.deepcopy(raw))


def test_reordered_lists_have_the_same_canonical_spec_and_hash():
    raw = grown_raw()
    shuffled = copy.deepcopy(raw)
    shuffled["seeds"] = [2, 1, 0]
    shuffled["noise"] = [0.2, 0.0]
    shuffled["datasets"]["random"].update(N=[24, 20, 16], alpha=[0.6, 0.05, 0.4, 0.1, 0.3, 0.2])
    shuffled["rules"] = {"storkey": {}, "hebb": {}}
    raw["rules"] = {"hebb": {}, "storkey": {}}
    a, b = sweep(raw), sweep(shuffled)
    assert a.canonical == b.canonical and a.spec_hash == b.spec_hash
    assert a.seeds == (0, 1, 2) and a.noise == (0.0, 0.2) and a.N_values == (16, 20, 24)
    assert a.load_values == (0.05, 0.1, 0.2, 0.3, 0.4, 0.6)
    assert [r.label for r in b.rules] == ["hebb", "storkey"]


def test_variants_go_by_label_with_numbers_compared_as_numbers():
    raw = copy.deepcopy(BASE)
    raw["datasets"] = {f"n{N}": {"kind": "random", "N": [N], "alpha": [0.05]} for N in (1600, 200, 400)}
    raw["rules"] = {"tap": {"kind": "hebb", "dynamics": "tap", "dynamics_params": {"beta": [10.0, 2.0]}}, "hebb": {}}
    s = sweep(raw)
    assert [d.label for d in s.datasets] == ["n200", "n400", "n1600"]
    assert [r.label for r in s.rules] == ["hebb", "tap[beta=2.0]", "tap[beta=10.0]"]


def test_an_extension_inserting_values_mid_axis_stores_sorted_axes(tmp_path):
    path, straight = str(tmp_path / "grown.zarr"), str(tmp_path / "straight.zarr")
    run(Cube.create_or_open(path, sweep(BASE)), SerialExecutor(), progress=False)
    before = open_cube(path).load()  # eager: the restage rewrites the shards a lazy view would read
    with Cube.create_or_open(path, sweep(grown_raw())) as cube:
        assert cube.sweep.spec_hash == sweep(grown_raw()).spec_hash
        assert cube.count_pending() == 3 * 6 * 3 - 2 * 4 * 2
        run(cube, SerialExecutor(), progress=False)
    for ds in (open_cube(path), xr.open_zarr(path), xr.open_dataset(path, engine="amsweep")):
        assert ds["alpha"].values.tolist() == [0.05, 0.1, 0.2, 0.3, 0.4, 0.6]
        assert ds["N"].values.tolist() == [16, 20, 24] and ds["seed"].values.tolist() == [0, 1, 2]
        assert ds.sel(alpha=slice(0.05, 0.2))["alpha"].values.tolist() == [0.05, 0.1, 0.2]
        assert ds.sel(alpha=slice(0.07, 0.25))["alpha"].values.tolist() == [0.1, 0.2]  # absent labels slice too
    after = open_cube(path)
    for name in (
        "m_train",
        "success_train",
        "coupling_similarity",
        "status",
    ):  # old tasks keep their values, found by coordinates
        old = before[name].values
        new = after[name].sel(N=[16, 24], alpha=[0.05, 0.1, 0.2, 0.4], seed=[0, 2]).values
        np.testing.assert_array_equal(new, old, err_msg=name)
    run(Cube.create_or_open(straight, sweep(grown_raw())), SerialExecutor(), progress=False)
    assert_same_cube(path, straight)
    a, b = Cube.open(path), Cube.open(straight)
    assert a.sweep.spec_hash == b.sweep.spec_hash
    for index in [(0, 0, 0, 0, 0), (0, 2, 4, 0, 2), (0, 1, 3, 0, 1)]:  # task arrays moved with their tasks
        np.testing.assert_array_equal(a.couplings(index), b.couplings(index))
    assert not list(Path(path, "_amsweep").glob("stage/**/*.*"))  # the staged copy is gone


def test_appending_at_the_end_of_every_axis_needs_no_rewrite(tmp_path):
    from tests.test_cube_crash import written_keys

    path = str(tmp_path / "append.zarr")
    run(Cube.create_or_open(path, sweep(BASE)), SerialExecutor(), progress=False)
    raw = copy.deepcopy(BASE)
    raw["seeds"] = [0, 2, 3]
    raw["datasets"]["random"]["alpha"] = [0.05, 0.1, 0.2, 0.4, 0.5]
    keys = written_keys(None, lambda: Cube.create_or_open(path, sweep(raw)).release())
    assert not [k for k in keys if "/stage/" in k], keys
    assert Cube.open(path).status()[:, :, :4, :, :2].tolist() == (np.ones((1, 2, 4, 1, 2)) * DONE).tolist()


def test_run_and_status_print_the_same_hash_for_an_extended_cube(tmp_path):
    """4b6d03b: `run` printed the spec file's hash, `status` the stored (appended) spec's."""
    head = 'name = "order"\nroot_seed = 5\nnoise = [0.2, 0.0]\nP_test = 4\n'
    tail = "[retrieval]\ntrain_starts = 4\ntest_starts = 4\nrandom_starts = 2\n[rules.hebb]\n"
    first, grown, shuffled = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    first.write_text(head + "seeds = [0, 2]\n" + tail + "[datasets.random]\nN = [16]\nalpha = [0.05, 0.3]\n")
    grown.write_text(head + "seeds = [2, 1, 0]\n" + tail + "[datasets.random]\nN = [16]\nalpha = [0.3, 0.1, 0.05]\n")
    shuffled.write_text(head + "seeds = [0, 1, 2]\n" + tail + "[datasets.random]\nN = [16]\nalpha = [0.05, 0.3, 0.1]\n")
    out = str(tmp_path / "c.zarr")
    cli = [sys.executable, "-m", "amsweep.sweeps.cli"]
    outputs = []
    serial = ["--executor", "serial"]  # the hash is printed before any cell runs: two local Ray starts added ~30 s
    for argv in (
        ["run", str(first), "--out", out, *serial],
        ["run", str(grown), "--out", out, *serial],
        ["status", out],
    ):
        done = subprocess.run([*cli, *argv], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    want = Cube.open(out).sweep.spec_hash
    assert want == spec_mod.load(grown).spec_hash == spec_mod.load(shuffled).spec_hash
    assert f"spec {want}" in outputs[1] and want in outputs[2], outputs


SMALL_BASE = {**copy.deepcopy(BASE), "datasets": {"random": {"N": [16], "alpha": [0.05, 0.2, 0.4]}}}


def small_grown() -> dict:
    raw = copy.deepcopy(SMALL_BASE)
    raw["seeds"] = [0, 1, 2]
    raw["datasets"]["random"]["alpha"] = [0.05, 0.1, 0.2, 0.4]
    return raw


def test_a_mid_axis_extension_killed_anywhere_resumes_to_an_uninterrupted_run(tmp_path):
    from amsweep.pipeline.errors import CubeError
    from amsweep.storage.check import check
    from tests.test_cube_crash import killed_at_write

    base, straight = tmp_path / "base.zarr", str(tmp_path / "straight.zarr")
    run(Cube.create_or_open(str(base), sweep(SMALL_BASE)), SerialExecutor(), progress=False)
    run(Cube.create_or_open(straight, sweep(small_grown())), SerialExecutor(), progress=False)

    def grow(path: Path) -> None:
        Cube.create_or_open(str(path), sweep(small_grown())).release()

    writes = killed_at_write(
        None, lambda: grow(tmp_path / "count.zarr"), setup=lambda: shutil.copytree(base, tmp_path / "count.zarr")
    )
    assert writes > 40
    swapping = 0
    for k in range(1, writes + 1, max(1, writes // 10)):  # stage, READY, swap, commit, cleanup
        path = tmp_path / f"k{k}.zarr"
        shutil.copytree(base, path)
        assert killed_at_write(k, lambda: grow(path)) == -9
        if Path(path, "_amsweep/stage/READY.json").exists():
            swapping += 1
            with pytest.raises(CubeError, match="interrupted while swapping"):
                Cube.open(str(path))  # half-swapped shards are never read as the old cube
        run(Cube.create_or_open(str(path), sweep(small_grown())), SerialExecutor(), progress=False)
        cube = Cube.open(str(path))
        assert check(cube).ok and cube.sweep.spec_hash == Cube.open(straight).sweep.spec_hash
        assert_same_cube(str(path), straight)
        for index in np.ndindex(*cube.sweep.shape):
            np.testing.assert_array_equal(cube.couplings(index), Cube.open(straight).couplings(index))
    assert swapping >= 2  # some kills landed in the swap phase


FORMAT2 = Path(__file__).parent / "data" / "format2_tiny.zarr"


def test_upgrade_of_a_format_2_cube_sorts_its_axes_and_keeps_every_value(tmp_path):
    from amsweep.pipeline.metric_table import METRICS
    from amsweep.storage.check import check

    path = tmp_path / "f2.zarr"
    shutil.copytree(FORMAT2, path)
    old = Cube.open(str(FORMAT2))
    assert old.sweep.load_values == (0.05, 0.3, 0.1) and old.sweep.seeds == (0, 2, 1)  # as 4b6d03b stored it
    before = open_cube(str(FORMAT2)).load()
    cli = [sys.executable, "-m", "amsweep.sweeps.cli", "upgrade", str(path)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "values verified equal to the format-2 cube" in out.stdout and "moved" in out.stdout
    cube = Cube.open(str(path))
    assert check(cube).ok
    assert cube.sweep.seeds == (0, 1, 2) and cube.sweep.load_values == (0.05, 0.1, 0.3)
    assert [r.label for r in cube.sweep.rules] == ["hebb", "plm"]
    after = open_cube(str(path))
    assert after.sel(alpha=slice(0.05, 0.1))["alpha"].values.tolist() == [0.05, 0.1]
    aligned = after.sel(alpha=before["alpha"].values, seed=before["seed"].values, rule=before["rule"].values)
    np.testing.assert_array_equal(aligned["status"].values, before["status"].values)
    done = before["status"].values == DONE
    assert done.sum() == 11
    for name, metric in METRICS.items():
        if metric.deterministic and name in before:  # metrics newer than the fixture are added by the next run
            np.testing.assert_array_equal(aligned[name].values[done], before[name].values[done], err_msg=name)
    assert [f["coords"] for f in cube.failures()] == [f["coords"] for f in old.failures()]
    for index in zip(*np.nonzero(done)):
        coords = old.coords_of(tuple(int(i) for i in index))
        new = (
            0,
            0,
            cube.sweep.load_values.index(coords["alpha"]),
            [r.label for r in cube.sweep.rules].index(coords["rule"]),
            cube.sweep.seeds.index(coords["seed"]),
        )
        np.testing.assert_array_equal(cube.couplings(new), old.couplings(tuple(int(i) for i in index)))
    again = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "nothing to upgrade" in again.stderr
    # the upgraded cube runs on, and ends equal to a cube of the same spec run in one go today
    run(Cube.create_or_open(str(path), cube.sweep), SerialExecutor(), progress=False)
    straight = str(tmp_path / "straight.zarr")
    run(Cube.create_or_open(straight, cube.sweep), SerialExecutor(), progress=False)
    newer = {n for n in METRICS if n not in before}  # added by that run: NaN for tasks the fixture had done
    va, vb = cube_values(str(path)), cube_values(straight)
    assert va.keys() == vb.keys()
    for name in va.keys() - newer:
        np.testing.assert_array_equal(va[name], vb[name], err_msg=f"variable {name} differs")


def test_a_mid_axis_extension_on_s3_equals_the_local_uninterrupted_run(tmp_path):
    from benchmarks._moto import moto_server
    from amsweep.storage.objects import objects_at

    with moto_server(buckets=("cubes",)):
        url = "s3://cubes/order.zarr"
        run(Cube.create_or_open(url, sweep(SMALL_BASE)), SerialExecutor(), progress=False)
        run(Cube.create_or_open(url, sweep(small_grown())), SerialExecutor(), progress=False)
        local = str(tmp_path / "local.zarr")
        run(Cube.create_or_open(local, sweep(small_grown())), SerialExecutor(), progress=False)
        assert_same_cube(url, local)
        assert open_cube(url)["alpha"].values.tolist() == [0.05, 0.1, 0.2, 0.4]
        assert not objects_at(url).list("_amsweep/stage")


def test_refine_reads_the_spec_of_a_rewrite_killed_mid_swap(tmp_path):
    """A refine round's values exist only in the new root document until the swap commits: a
    refine started again must finish the swap before reading the stored spec, or it would see the
    old grid and refuse its own cube as one with values removed."""
    from amsweep.sweeps.refine import stored_spec
    from tests.test_cube_crash import killed_at_write, written_keys

    base = tmp_path / "base.zarr"
    run(Cube.create_or_open(str(base), sweep(SMALL_BASE)), SerialExecutor(), progress=False)

    def grow(path: Path) -> None:
        Cube.create_or_open(str(path), sweep(small_grown())).release()

    keys = written_keys(
        None, lambda: grow(tmp_path / "count.zarr"), setup=lambda: shutil.copytree(base, tmp_path / "count.zarr")
    )
    k = keys.index("_amsweep/stage/READY.json") + 4  # a few objects into the swap
    path = tmp_path / "killed.zarr"
    shutil.copytree(base, path)
    assert killed_at_write(k, lambda: grow(path)) == -9
    assert Path(path, "_amsweep/stage/READY.json").exists()
    assert stored_spec(str(path)) == sweep(small_grown()).canonical
    assert not Path(path, "_amsweep/stage").exists() or not any(Path(path, "_amsweep/stage").rglob("*.*"))
