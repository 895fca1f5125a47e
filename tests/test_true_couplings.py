"""The true_couplings rule: the dataset's own couplings as a row of the cube, the spin-glass reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amsweep.analysis import figures
from amsweep.analysis.tables import tidy
from amsweep.pipeline import cell
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.datasets import spin_glass
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.model import NotApplicable
from amsweep.pipeline.rules import true_couplings
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.query import open_cube


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small private sample pools: nothing read from or written to the user's cache."""
    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))
    spin_glass._pool.cache_clear()
    yield
    spin_glass._pool.cache_clear()


SG = {
    "kind": "spin_glass",
    "N": [25],
    "alpha": [1.0, 4.0],
    "temperature": 0.5,
    "t_min": 0.5,
    "sweeps": 2,
    "equilibration": 200,
    "pool": 256,
}


def _raw() -> dict:
    return {
        "name": "true",
        "root_seed": 3,
        "seeds": 2,
        "noise": [0.0, 0.1],
        "P_test": 20,
        "retrieval": {"train_starts": 20, "test_starts": 20, "random_starts": 5},
        "datasets": {"sg": dict(SG), "random": {"N": [25], "alpha": [1.0]}},
        "rules": {"hebb": {}, "true_couplings": {}},
    }


def test_rule_returns_the_couplings_of_the_data_distribution_and_refuses_data_without_them():
    params = {k: v.default for k, v in spin_glass.PARAMS.items()} | {
        k: SG[k] for k in ("temperature", "t_min", "sweeps", "equilibration", "pool")
    }
    data = spin_glass.make(25, 20, 5, params, np.random.default_rng(0))
    model = true_couplings.train(data.train, 2, {}, np.random.default_rng(0), meta=data.meta)
    np.testing.assert_array_equal(model.J, data.meta["true_J"] / np.float32(0.5))  # J / T, T = 0.5
    assert model.J.dtype == np.float32 and not np.diag(model.J).any()
    with pytest.raises(NotApplicable, match="known couplings"):
        true_couplings.train(data.train, 2, {}, None, meta={})
    with pytest.raises(NotApplicable):
        true_couplings.train(data.train, 2, {}, None)


def test_sweep_stores_the_reference_as_a_row_and_skips_datasets_without_couplings(tmp_path):
    """On the spin glass the rule's cosine to the true couplings is 1 and its training samples are
    fixed points exactly when no single flip lowers the energy (checked here from true_J directly);
    on random patterns it is not applicable."""
    sweep = spec_mod.from_dict(_raw())
    path = str(tmp_path / "true.zarr")
    run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    ds = open_cube(path)
    status = ds["status"].sel(rule="true_couplings")
    assert (status.sel(dataset="random") == 3).all() and (status.sel(dataset="sg") == 1).all()
    frame = tidy(ds, ["coupling_similarity", "fixed_point_fraction", "m_test"])
    mine = frame[frame["rule"] == "true_couplings"]
    np.testing.assert_allclose(mine["coupling_similarity"], 1.0, atol=1e-6)
    assert mine["m_test"].between(-1, 1).all()
    for task in sweep.tasks():
        if task.rule.kind != "true_couplings" or task.dataset.kind != "spin_glass":
            continue
        data = cell.make_data(task, sweep.root_seed)
        h = data.train.astype(np.float64) @ data.meta["true_J"].astype(np.float64)
        stable = np.mean(np.all(data.train * h >= -1e-5, axis=1))  # ties keep the spin
        row = mine[(mine["seed"] == task.seed) & np.isclose(mine["alpha"], task.P / task.N)]
        assert row["fixed_point_fraction"].iloc[0] == pytest.approx(stable, abs=1e-6)


def test_line_figure_draws_the_reference_rule_as_a_line_of_its_own(tmp_path):
    raw = _raw()
    raw["datasets"].pop("random")
    path = str(tmp_path / "ref.zarr")
    run(Cube.create_or_open(path, spec_mod.from_dict(raw)), SerialExecutor(), progress=False)
    ds = open_cube(path)
    assert figures.reference_rule(ds) == "true_couplings"
    png = figures.line_figure(
        ds, ["m_train", "m_test"], tmp_path / "ov", at={"noise": 0.0}, reference=("true_couplings", "m_test")
    )
    assert png.exists()
    with pytest.raises(ValueError, match="no done task"):
        figures.line_figure(ds, "m_test", tmp_path / "x", reference=("nothing", "m_test"), at={"noise": 0.0})
