"""End to end through the runner: determinism, serial versus Ray, resume, refusal of another spec."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import RayExecutor, SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube, CubeError
from amsweep.storage.schema import DONE, FAILED, NOT_APPLICABLE, PENDING
from amsweep.storage.query import open_cube, to_frame
from tests.conftest import StopAfter, assert_same_cube, cube_values


def run_serial(path, sweep) -> Cube:
    cube = Cube.create_or_open(str(path), sweep)
    report = run(cube, SerialExecutor(), progress=False)
    assert report.failed == 0 and report.remaining == 0
    return cube


def test_same_spec_gives_identical_cube(tmp_path, small_sweep):
    run_serial(tmp_path / "a.zarr", small_sweep)
    run_serial(tmp_path / "b.zarr", small_sweep)
    assert_same_cube(str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"))
    values = cube_values(str(tmp_path / "a.zarr"))
    assert (values["status"] == DONE).all()
    assert np.isfinite(values["m_train"]).all()


def test_ray_and_serial_agree_value_for_value(tmp_path, small_sweep, ray_local):
    run_serial(tmp_path / "serial.zarr", small_sweep)
    cube = Cube.create_or_open(str(tmp_path / "ray.zarr"), small_sweep)
    executor = RayExecutor()
    report = run(cube, executor, progress=False)
    assert report.done == 8 and report.failed == 0
    assert_same_cube(str(tmp_path / "serial.zarr"), str(tmp_path / "ray.zarr"))


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, small_sweep):
    path = str(tmp_path / "resumed.zarr")
    cube = Cube.create_or_open(path, small_sweep)
    first = run(cube, StopAfter(3), progress=False, flush_every=2)
    assert first.interrupted and first.done == 3
    status = Cube.open(path).status()
    assert (status == DONE).sum() == 3 and (status == PENDING).sum() == 5
    second = run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False)
    assert second.done == 5
    run_serial(tmp_path / "straight.zarr", small_sweep)
    assert_same_cube(path, str(tmp_path / "straight.zarr"))
    third = run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False)
    assert third.done == 0  # nothing left: a resumed sweep never recomputes what is done


def test_another_spec_on_the_same_cube_is_refused_and_nothing_changes(tmp_path, small_raw):
    path = str(tmp_path / "c.zarr")
    run_serial(path, spec_mod.from_dict(small_raw))
    before = cube_values(path)
    other = copy.deepcopy(small_raw)
    other["rules"]["plm"]["lr"] = 2.0
    other["noise"] = [0.0, 0.2]
    with pytest.raises(CubeError) as info:
        Cube.create_or_open(path, spec_mod.from_dict(other))
    message = str(info.value)
    assert "written by another spec" in message
    assert "noise: [0.0, 0.15] -> [0.0, 0.2]" in message
    assert "'plm' changed in params" in message
    after = cube_values(path)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_foreign_paths_are_refused(tmp_path, small_sweep):
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "keep.txt").write_text("precious")
    with pytest.raises(CubeError, match="not a Zarr v3 group"):
        Cube.create_or_open(str(plain), small_sweep)
    assert (plain / "keep.txt").read_text() == "precious"
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3, attributes={"x": 1})
    with pytest.raises(CubeError, match="not written by amsweep"):
        Cube.create_or_open(str(tmp_path / "other.zarr"), small_sweep)


def test_cells_outside_a_dataset_grid_are_not_applicable(tmp_path, small_raw):
    small_raw["datasets"]["big"] = {"kind": "random", "N": [64], "alpha": [0.05]}
    sweep = spec_mod.from_dict(small_raw)
    cube = run_serial(tmp_path / "na.zarr", sweep)
    status = cube.status()
    # random: N=48 only, both loads; big: N=64 at alpha=0.05 only.
    assert (status == DONE).sum() == len(list(sweep.tasks())) == (2 + 1) * 2 * 2
    assert (status == NOT_APPLICABLE).sum() == status.size - (status == DONE).sum()


def test_failures_are_recorded_and_retried(tmp_path, small_raw, monkeypatch):
    sweep = spec_mod.from_dict(small_raw)
    path = str(tmp_path / "f.zarr")
    cube = Cube.create_or_open(path, sweep)
    import amsweep.pipeline.rules.plm as plm

    original = plm.train

    def broken(X, q, params, rng):
        raise FloatingPointError("injected failure")

    monkeypatch.setattr(plm, "train", broken)
    report = run(cube, SerialExecutor(), progress=False)
    assert report.failed == 4 and report.done == 4
    failures = Cube.open(path).failures()
    assert len(failures) == 4 and all("injected failure" in f["error"] for f in failures)
    assert {f["coords"]["rule"] for f in failures} == {"plm"}
    assert (Cube.open(path).status() == FAILED).sum() == 4
    monkeypatch.setattr(plm, "train", original)
    report = run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    assert report.done == 4 and report.failed == 0
    assert Cube.open(path).failures() == []
    assert (Cube.open(path).status() == DONE).all()


def test_hebb_fixed_points_at_small_alpha_and_plm_where_hebb_fails(tmp_path, small_sweep):
    """N=48: Hebb's per-site error probability is Phi(-1/sqrt(alpha)): 4e-6 at alpha=0.05, so all
    P=2 patterns are fixed points; at alpha=0.3 it is 0.034, so a pattern survives all 48 sites with
    probability ~0.19 and the mean over 2 x 14 patterns stays far below 0.6. PLM makes every one a
    fixed point (its pseudo-likelihood is maximised when every site is aligned with its field)."""
    run_serial(tmp_path / "fp.zarr", small_sweep)
    frame = to_frame(open_cube(str(tmp_path / "fp.zarr")), "fixed_point_fraction")
    by = frame.groupby(["rule", "alpha"])["fixed_point_fraction"].mean()
    assert by[("hebb", 0.05)] == 1.0
    assert by[("hebb", 0.3)] < 0.6
    assert by[("plm", 0.05)] == 1.0 and by[("plm", 0.3)] == 1.0


def test_adding_values_extends_the_cube_without_touching_done_tasks(tmp_path, small_raw):
    path = str(tmp_path / "grow.zarr")
    run_serial(path, spec_mod.from_dict(small_raw))
    before = cube_values(path)
    bigger = copy.deepcopy(small_raw)
    bigger["seeds"] = 3
    bigger["datasets"]["random"]["alpha"] = [0.05, 0.3, 0.15]
    bigger["rules"]["storkey_like"] = {"kind": "hebb"}
    cube = Cube.create_or_open(path, spec_mod.from_dict(bigger))
    assert cube.status().shape == (1, 1, 3, 3, 3)
    old = np.ix_([0], [0], [0, 2], [0, 1], [0, 1])  # alpha 0.15 lands between 0.05 and 0.3: canonical order
    assert (cube.status()[old] == DONE).all()
    assert (cube.status() == PENDING).sum() == 27 - 8
    report = run(cube, SerialExecutor(), progress=False)
    assert report.done == 19
    after = cube_values(path)
    for name in before:  # done values are bit-identical after growth and the new run
        np.testing.assert_array_equal(after[name][old], before[name])
    # the grown cube equals a cube made in one go from the merged spec
    straight = str(tmp_path / "straight.zarr")
    run_serial(straight, Cube.open(path).sweep)
    assert_same_cube(path, straight)
    ds = open_cube(path)
    assert ds["alpha"].values.tolist() == [0.05, 0.15, 0.3]
    assert ds["seed"].values.tolist() == [0, 1, 2]
    # running the extended spec again resumes: nothing to do, nothing refused
    assert Cube.create_or_open(path, spec_mod.from_dict(bigger)).count_pending() == 0


def test_removing_values_is_refused(tmp_path, small_raw):
    path = str(tmp_path / "shrink.zarr")
    run_serial(path, spec_mod.from_dict(small_raw))
    fewer = copy.deepcopy(small_raw)
    fewer["seeds"] = [0]
    with pytest.raises(CubeError, match=r"seeds: \[1\] removed"):
        Cube.create_or_open(path, spec_mod.from_dict(fewer))


def test_couplings_are_stored_per_task_when_asked(tmp_path, small_raw):
    from amsweep.pipeline.cell import make_data, train
    from amsweep.storage.query import load_couplings

    small_raw["retrieval"]["store_couplings"] = True
    sweep = spec_mod.from_dict(small_raw)
    path = str(tmp_path / "J.zarr")
    run_serial(path, sweep)
    task = next(t for t in sweep.tasks() if t.rule.label == "plm" and t.load == 0.3 and t.seed == 1)
    stored = load_couplings(path, {"dataset": "random", "N": 48, "alpha": 0.3, "rule": "plm", "seed": 1})
    again = train(task, make_data(task, sweep.root_seed), sweep.root_seed).J
    np.testing.assert_array_equal(stored, again)  # the very couplings the metrics came from
    assert stored.shape == (48, 48) and np.all(np.diag(stored) == 0)
    assert cube_values(path)["m_train"].shape == (1, 1, 2, 2, 2, 2)  # metrics unaffected
    with pytest.raises(KeyError, match="give a value for"):
        load_couplings(path, {"dataset": "random"})


def test_fixed_points_of_a_thermal_dynamics_are_those_of_its_zero_temperature_limit(tmp_path, small_raw):
    """At T = 5 a heat-bath sweep flips about half the spins of any state, but Hebb at alpha = 0.05
    (N = 48, P = 2) keeps both patterns as zero-temperature fixed points (error probability 4e-6
    per site): the cell must report 1.0, not the fraction a random thermal sweep leaves intact."""
    small_raw["rules"] = {"hot": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": {"temperature": 5.0}}}
    small_raw["datasets"]["random"]["alpha"] = [0.05]
    path = str(tmp_path / "hot.zarr")
    run_serial(path, spec_mod.from_dict(small_raw))
    values = cube_values(path)
    assert (values["fixed_point_fraction"] == 1.0).all()
    assert (values["m_train"] < 0.5).all()  # while retrieval at T = 5 is lost, as it should be
