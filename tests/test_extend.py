"""Growing a cube by sweeping a parameter that was a scalar (issue 13: `lr = 1.0` -> `lr = [1.0, 0.5]`
was refused as "rules: 'plm' removed" although the README says adding variants grows the cube)."""

from __future__ import annotations

import copy

import numpy as np

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.extend import merge
from amsweep.storage.schema import DONE, PENDING
from amsweep.storage.query import open_cube
from tests.conftest import StopAfter, assert_same_cube, cube_values


def canonical(raw) -> dict:
    return spec_mod.from_dict(raw).canonical


def swept(raw, **lr_and_more) -> dict:
    raw = copy.deepcopy(raw)
    raw["rules"]["plm"].update(lr_and_more)
    return raw


def test_sweeping_a_scalar_renames_the_variant_in_place(small_raw):
    old = canonical(small_raw)  # plm has lr = 5.0
    merged, problems = merge(old, canonical(swept(small_raw, lr=[2.0, 5.0])))
    assert problems == []
    assert [r["label"] for r in merged["rules"]] == ["hebb", "plm[lr=2.0]", "plm[lr=5.0]"]  # canonical: by label
    kept = merged["rules"][2]
    assert kept["params"] == old["rules"][1]["params"] and kept["stream"] == "plm"
    assert "stream" not in merged["rules"][1] and merged["rules"][1]["params"]["lr"] == 2.0
    again, problems = merge(merged, canonical(swept(small_raw, lr=[2.0, 5.0])))
    assert problems == [] and again == merged  # the next run of the same spec changes nothing


def test_a_renamed_variant_keeps_its_first_stream_label(small_raw):
    first, _ = merge(canonical(small_raw), canonical(swept(small_raw, lr=[5.0, 2.0])))
    second, problems = merge(first, canonical(swept(small_raw, lr=[5.0, 2.0], epochs=[30, 60])))
    assert problems == []
    assert [(r["label"], r.get("stream")) for r in second["rules"]] == [
        ("hebb", None),
        ("plm[lr=2.0,epochs=30]", "plm[lr=2.0]"),
        ("plm[lr=2.0,epochs=60]", None),
        ("plm[lr=5.0,epochs=30]", "plm"),
        ("plm[lr=5.0,epochs=60]", None),
    ]


def test_dataset_variants_are_renamed_too(small_raw):
    bigger = copy.deepcopy(small_raw)
    bigger["datasets"]["random"].update(bias=[0.0, 0.5], alpha=[0.05, 0.3, 0.1])
    merged, problems = merge(canonical(small_raw), canonical(bigger))
    assert problems == []
    assert [(d["label"], d.get("stream"), d["load"]) for d in merged["datasets"]] == [
        ("random[bias=0.0]", "random", [0.05, 0.1, 0.3]),
        ("random[bias=0.5]", None, [0.05, 0.1, 0.3]),
    ]


def test_dropping_the_old_value_says_exactly_why_it_cannot_grow(small_raw):
    _, problems = merge(canonical(small_raw), canonical(swept(small_raw, lr=[2.0, 3.0])))
    assert problems == [
        "rules: 'plm' removed: no variant of [rules.plm] keeps its parameters (closest: 'plm[lr=2.0]', "
        "params.lr 5.0 -> 2.0); keep its values among the swept ones to grow the cube"
    ]
    gone = copy.deepcopy(small_raw)
    del gone["rules"]["plm"]
    assert merge(canonical(small_raw), canonical(gone))[1] == [
        "rules: 'plm' removed (the new spec has no [rules.plm] entry)"
    ]


def test_a_new_variant_may_not_take_the_streams_of_a_renamed_one(small_raw):
    grown, _ = merge(canonical(small_raw), canonical(swept(small_raw, lr=[5.0, 2.0])))
    other = swept(small_raw, lr=[5.0, 2.0])
    other["rules"]["plm_b"] = {"kind": "plm", "lr": 1.0}
    other_canonical = canonical(other)
    other_canonical["rules"][-1]["label"] = "plm"  # as if an entry were named like the old label
    _, problems = merge(grown, other_canonical)
    assert any("would share the random streams" in p for p in problems), problems


def test_growing_by_a_swept_parameter_end_to_end(tmp_path, small_raw):
    """Done cells keep their values; cells of the renamed variant still pending when it was renamed
    come out as an uninterrupted run of the old spec would have made them; the grown cube equals
    a cube made in one go from the merged spec."""
    path, reference = str(tmp_path / "grow.zarr"), str(tmp_path / "old.zarr")
    old = spec_mod.from_dict(small_raw)
    run(Cube.create_or_open(reference, old), SerialExecutor(), progress=False)
    first = run(Cube.create_or_open(path, old), StopAfter(5), progress=False, flush_every=1)
    assert first.interrupted
    before = cube_values(path)
    cube = Cube.create_or_open(path, spec_mod.from_dict(swept(small_raw, lr=[5.0, 2.0])))
    status = cube.status()
    assert status.shape == (1, 1, 2, 3, 2) and (status[..., 1, :] == PENDING).all()  # plm[lr=2.0] sorts between
    assert (status[..., [0, 2], :] == before["status"]).all()
    run(cube, SerialExecutor(), progress=False)
    after = cube_values(path)
    assert (before["status"] == DONE).sum() == 5 and (after["status"] == DONE).all()
    for name, value in cube_values(reference).items():  # the renamed variant keeps the streams of 'plm'
        np.testing.assert_array_equal(after[name][:, :, :, [0, 2]], value, err_msg=name)
    assert open_cube(path)["rule"].values.tolist() == ["hebb", "plm[lr=2.0]", "plm[lr=5.0]"]
    straight = str(tmp_path / "straight.zarr")
    run(Cube.create_or_open(straight, Cube.open(path).sweep), SerialExecutor(), progress=False)
    assert_same_cube(path, straight)
    again = Cube.create_or_open(path, spec_mod.from_dict(swept(small_raw, lr=[5.0, 2.0])))
    assert again.count_pending() == 0


def test_pending_of_a_partly_done_cube_is_lazy_and_in_order(tmp_path, small_raw):
    """Resuming reads the todo flags one (dataset, N, load) slab at a time: 1c8b720 held the whole
    grid as nested lists for the run (~69 MiB for 10^6 one-seed tasks; ~15 MiB here). Same tasks,
    same order as ec2a2d0's per-task numpy test, skipped (dataset, N, load) combinations included."""
    import inspect
    import itertools
    import tracemalloc

    from amsweep.storage.cube import Mark
    from amsweep.storage.schema import FAILED, NOT_APPLICABLE

    raw = copy.deepcopy(small_raw)
    raw["seeds"] = 1
    alphas = [round(0.001 * k, 3) for k in range(1, 501)]
    raw["datasets"] = {
        "a": {"kind": "random", "N": list(range(100, 150)), "alpha": alphas},
        "b": {"kind": "random", "N": list(range(125, 175)), "alpha": alphas},  # N 100-124 of b: no task
    }
    cube = Cube.create_or_open(str(tmp_path / "big.zarr"), spec_mod.from_dict(raw))
    tasks = list(cube.sweep.tasks())
    assert len(tasks) == 10**5
    marks = [Mark(t.index, FAILED, "boom") for t in tasks[1::7]]
    marks += [Mark(t.index, NOT_APPLICABLE, "n/a") for t in tasks[::5]]
    cube.write([], marks)
    status = cube.status()
    for retry_failed, todo in ((True, (PENDING, FAILED)), (False, (PENDING,))):
        expected = [t.index for t in tasks if status[t.index] in todo]  # ec2a2d0's sequence
        tracemalloc.start()
        try:
            pending = cube.pending(retry_failed=retry_failed)
            assert inspect.isgenerator(pending)
            same = all(t is not None and t.index == e for t, e in itertools.zip_longest(pending, expected))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert same and 0 < len(expected) < len(tasks)
        assert peak < 2 * 2**20, f"pending() peaked at {peak / 2**20:.1f} MiB for {len(tasks)} tasks"
