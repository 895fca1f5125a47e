"""Canonical axis order (issue 21, item 3): every axis sorted whatever order a spec or an extension
gave, so label slices and group-bys are right, and the spec hash depends on content only.

On 4b6d03b an extension appended values (alpha [0.05, 0.1, 0.2, 0.4] + 0.3, 0.6 was stored as
[0.05, 0.1, 0.2, 0.4, 0.3, 0.6]) and ``sel(alpha=slice(0.05, 0.2))`` returned the 0.3 cells too.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.layout import DONE
from amsweep.storage.query import open_cube
from tests.conftest import assert_same_cube

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
    for name in ("m_train", "success_train", "coupling_similarity", "status"):  # old tasks keep their values, found by coordinates
        old = before[name].values
        new = after[name].sel(N=[16, 24], alpha=[0.05, 0.1, 0.2, 0.4], seed=[0, 2]).values
        np.testing.assert_array_equal(new, old, err_msg=name)
    run(Cube.create_or_open(straight, sweep(grown_raw())), SerialExecutor(), progress=False)
    assert_same_cube(path, straight)
    a, b = Cube.open(path), Cube.open(straight)
    assert a.sweep.spec_hash == b.sweep.spec_hash
    for index in [(0, 0, 0, 0, 0), (0, 2, 4, 0, 2), (0, 1, 3, 0, 1)]:  # side objects moved with their tasks
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


def test_run_and_status_print_the_same_hash_for_a_shuffled_spec(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "order"\nroot_seed = 5\nseeds = [1, 0]\nnoise = [0.2, 0.0]\nP_test = 4\n'
        "[retrieval]\ntrain_starts = 4\ntest_starts = 4\nrandom_starts = 2\n"
        '[datasets.random]\nN = [16]\nalpha = [0.3, 0.05]\n[rules.hebb]\n'
    )
    out = str(tmp_path / "c.zarr")
    cli = [sys.executable, "-m", "amsweep.pipeline.cli"]
    ran = subprocess.run([*cli, "run", str(spec), "--out", out], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    status = subprocess.run([*cli, "status", out], capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    want = Cube.open(out).sweep.spec_hash
    assert f"spec {want}" in ran.stdout and want in status.stdout, (ran.stdout, status.stdout)
