"""``[retrieval] store_magnetisations``: the thermal states of the training starts, per task.

Off by default and then absent from the canonical spec, so every earlier spec and cube keeps its
hash; on, the cube holds one (noise, starts, N) float32 object per task, equal to a direct
recomputation of the cell's relaxations, and every metric stays bit for bit what it was.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from amsweep import sweeps as sweeps_pkg
from amsweep.pipeline import metrics as M
from amsweep.pipeline import registry
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import data_key, make_data, train
from amsweep.pipeline.params import SpecError
from amsweep.pipeline.seeding import stream
from amsweep.storage.query import load_magnetisations
from tests.conftest import assert_same_cube
from tests.test_sweep_run import run_serial

BUNDLED = Path(sweeps_pkg.__file__).parent

# Hashes of bundled specs before the option existed (commit 8acd611): adding it must not move them.
# The canonical axis order (issue 21: variants by label, numbers in a label by value) moved the two
# whose rules were not in that order (32d3959791221516 and 3663d3a7cd1eee6c at 8acd611).
HASHES_BEFORE = {
    "quickstart": "74f78acd2704c7e3",
    "tap_vs_mc_laptop": "e9baf24a4d0829ea",
    "correlated_tap_paper": "c51f87052e9061c0",
}

TINY = {
    "name": "magn",
    "root_seed": 5,
    "seeds": 2,
    "noise": [0.0, 0.2],
    "P_test": 4,
    "retrieval": {"train_starts": 5, "test_starts": 3, "random_starts": 2},
    "datasets": {"random": {"N": [40], "alpha": [0.05, 0.15]}},
    "rules": {
        "glauber": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": {"temperature": 0.5, "max_sweeps": 60}},
        "tap": {"kind": "hebb", "dynamics": "tap", "dynamics_params": {"beta": 2.0}},
        "async": {"kind": "hebb"},
    },
}


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE))
def test_bundled_spec_hashes_unchanged(name):
    sweep = spec_mod.load(BUNDLED / f"{name}.toml")
    assert sweep.spec_hash == HASHES_BEFORE[name]
    assert "store_magnetisations" not in sweep.canonical["retrieval"]


def test_default_off_is_absent_and_explicit_false_keeps_the_hash():
    raw = copy.deepcopy(TINY)
    base = spec_mod.from_dict(raw)
    raw["retrieval"]["store_magnetisations"] = False
    assert spec_mod.from_dict(raw).spec_hash == base.spec_hash
    raw["retrieval"]["store_magnetisations"] = True
    on = spec_mod.from_dict(raw)
    assert on.spec_hash != base.spec_hash and on.canonical["retrieval"]["store_magnetisations"] is True
    again = spec_mod.from_canonical(on.canonical)
    assert again.spec_hash == on.spec_hash and again.retrieval.store_magnetisations is True
    raw["retrieval"]["store_magnetisations"] = "yes"
    with pytest.raises(SpecError, match="store_magnetisations"):
        spec_mod.from_dict(raw)


def _thermal_states(task, sweep) -> np.ndarray:
    """The cell's relaxations of its training starts, redone step by step with its streams."""
    data = make_data(task, sweep.root_seed)
    model = train(task, data, sweep.root_seed)
    dynamics = registry.component("dynamics", task.rule.dynamics)
    key = data_key(task)
    dyn_rng = stream(sweep.root_seed, "dynamics", *key, task.rule.stream_label)
    params = task.rule.dynamics_params
    if getattr(dynamics, "STOCHASTIC", False):
        registry.component("dynamics", "asynchronous").relax(model, data.train, {"max_sweeps": 1}, dyn_rng)
    else:
        dynamics.relax(model, data.train, {**params, "max_sweeps": 1}, dyn_rng)
    train_starts = data.train[: min(task.P, sweep.retrieval.train_starts)]
    test_starts = data.test[: min(data.test.shape[0], sweep.retrieval.test_starts)]
    out = []
    for rho in sweep.noise:
        start_rng = stream(sweep.root_seed, "starts", *key, rho)
        r = dynamics.relax(model, M.corrupt(train_starts, rho, data.q, start_rng, None), params, dyn_rng)
        out.append(M.thermal_state(r))
        if test_starts.shape[0]:
            dynamics.relax(model, M.corrupt(test_starts, rho, data.q, start_rng, None), params, dyn_rng)
    return np.stack(out).astype(np.float32)


def test_magnetisations_round_trip_and_leave_every_value_unchanged(tmp_path):
    off = spec_mod.from_dict(TINY)
    raw = copy.deepcopy(TINY)
    raw["retrieval"]["store_magnetisations"] = True
    on = spec_mod.from_dict(raw)
    run_serial(tmp_path / "off.zarr", off)
    run_serial(tmp_path / "on.zarr", on)
    assert_same_cube(str(tmp_path / "off.zarr"), str(tmp_path / "on.zarr"))  # no draw, no value changed
    assert not list((tmp_path / "off.zarr").rglob("*magnetisations*"))
    thermal_seen = False
    for task in on.tasks():
        coords = {"dataset": "random", "N": 40, "alpha": task.load, "rule": task.rule.label, "seed": task.seed}
        stored = load_magnetisations(str(tmp_path / "on.zarr"), coords)
        assert stored.dtype == np.float32 and stored.shape == (2, min(task.P, 5), 40)
        np.testing.assert_array_equal(stored, _thermal_states(task, on))
        thermal_seen |= bool(np.any(np.abs(stored) < 1))  # <s_i> of TAP/Glauber, not +-1 states
        if task.rule.label == "async":
            assert set(np.unique(stored)) <= {-1.0, 1.0}
    assert thermal_seen
    with pytest.raises(KeyError, match="store_magnetisations"):
        load_magnetisations(str(tmp_path / "off.zarr"), coords)


def test_site_comparison_reads_the_cube(tmp_path):
    """analysis.correlated_tap_sites: mse per start from the stored states, on a tiny cube."""
    from amsweep.analysis import correlated_tap_sites as S

    mc = {"temperature": 0.5, "max_sweeps": 60, "average_sweeps": 40}
    raw = {
        "name": "sites",
        "root_seed": 3,
        "seeds": 1,
        "noise": [0.0],
        "P_test": 0,
        "retrieval": {"train_starts": 3, "test_starts": 0, "random_starts": 0, "store_magnetisations": True},
        "datasets": {"corr": {"kind": "correlated", "N": [60], "alpha": [0.05], "depth": [0, 1]}},
        "rules": {
            "tap": {"kind": "hebb", "dynamics": "tap", "dynamics_params": {"beta": 2.0}},
            "tap_correlated": {"kind": "hebb", "dynamics": "tap_correlated", "dynamics_params": {"beta": 2.0}},
            "glauber": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": mc},
            "glauber_rep": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": mc},
        },
    }
    sweep = spec_mod.from_dict(raw)
    path = str(tmp_path / "c.zarr")
    run_serial(path, sweep)
    frame = S.site_frame(path)
    assert len(frame) == 2 * 3 and set(frame["depth"]) == {0, 1} and set(frame["T"]) == {0.5}
    label = next(d.label for d in sweep.datasets if d.params["depth"] == 1)
    coords = {"dataset": label, "N": 60, "alpha": 0.05, "seed": 0}
    ref = load_magnetisations(path, {**coords, "rule": "glauber"})[0]
    tap_m = load_magnetisations(path, {**coords, "rule": "tap"})[0]
    row = frame[frame["depth"] == 1].sort_values("start")
    np.testing.assert_allclose(row["mse_tap"], np.mean((tap_m.astype(float) - ref) ** 2, axis=1))
    task = next(t for t in sweep.tasks() if t.dataset.label == label)
    xi = make_data(task, sweep.root_seed).train[:3].astype(float)  # the patterns the starts came from
    np.testing.assert_allclose(row["q_mc"], np.einsum("bi,bi->b", xi, ref) / 60)
    table = S.site_table(frame)
    assert set(table.columns) >= {"plain", "adaptive", "mc_error", "compared", "starts"}
    assert S.site_figure(frame, tmp_path / "sites").exists()
