"""m_test only where test examples mean something (issue 22, point 5).

Test examples of i.i.d. random patterns share nothing with the training set: the overlap from a
test start measures no generalization. The dataset declares it (``TEST_MEANINGFUL = False``), and
the report and phase figures leave m_test and every test-derived value out for it, while a
dataset with structured test examples (a mixture) in the same cube keeps them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from amsweep.analysis import meaningful
from amsweep.analysis.phase import phase_figure
from amsweep.analysis.report import write_report
from amsweep.pipeline import contracts, registry
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import NoData
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage import query
from amsweep.storage.cube import Cube


def _cube(path, datasets: dict) -> str:
    raw = {
        "name": "meaningful",
        "root_seed": 5,
        "seeds": 1,
        "noise": [0.0, 0.2],
        "P_test": 5,
        "retrieval": {"train_starts": 6, "test_starts": 5, "random_starts": 2},
        "datasets": datasets,
        "rules": {"hebb": {}},
    }
    report = run(Cube.create_or_open(str(path), spec_mod.from_dict(raw)), SerialExecutor(), progress=False)
    assert report.failed == 0
    return str(path)


def _images(md) -> list[str]:
    return re.findall(r"!\[[^]]*\]\(([^)]+)\)", md.read_text())


def test_datasets_declare_whether_their_test_examples_mean_something():
    assert contracts.optional(registry.component("datasets", "random"), "TEST_MEANINGFUL") is False
    for kind in ("mixture", "mnist", "random_features", "correlated", "spin_glass"):
        assert contracts.optional(registry.component("datasets", kind), "TEST_MEANINGFUL") is True, kind


def test_a_random_pattern_cube_reports_no_m_test(tmp_path):
    path = _cube(tmp_path / "r.zarr", {"random": {"N": [31], "P": [1, 6]}})
    ds = query.open_cube(path)
    assert np.isfinite(query.done_values(ds, "m_test").values).any()  # the cube holds values ...
    md = write_report(path, tmp_path / "rep")
    images, text = _images(md), md.read_text()
    assert any("m_train" in i for i in images)
    assert not [i for i in images if "m_test" in i or i.startswith("class") or "gen_gap" in i], images
    assert "TEST_MEANINGFUL = False" in text and "`random`" in text  # ... and the report says why it omits them
    with pytest.raises(NoData):
        phase_figure(ds, "m_test", "P", "noise", tmp_path / "phase.png")
    masked = meaningful.without_meaningless_tests(ds)
    for name in meaningful.TEST_DERIVED:
        assert not np.isfinite(masked[name].values).any(), name
    assert (
        masked["m_train"].values[np.isfinite(ds["m_train"].values)]
        == ds["m_train"].values[np.isfinite(ds["m_train"].values)]
    ).all()


def test_a_structured_dataset_beside_random_patterns_keeps_its_m_test(tmp_path):
    path = _cube(
        tmp_path / "m.zarr",
        {"rand": {"kind": "random", "N": [31], "P": [1, 6]}, "mix": {"kind": "mixture", "N": [31], "P": [1, 6]}},
    )
    ds = query.open_cube(path)
    assert meaningful.meaningful_tests(ds) == {"rand": False, "mix": True}
    images = _images(write_report(path, tmp_path / "rep"))
    assert "phase_m_test_mix_N31.png" in images and not any("m_test_rand" in i for i in images)
    masked = meaningful.without_meaningless_tests(ds)
    assert np.isfinite(masked["m_test"].sel(dataset="mix").values).any()
    assert not np.isfinite(masked["m_test"].sel(dataset="rand").values).any()
