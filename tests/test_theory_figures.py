"""Theory-overlay figures on small real sweeps: temperature axis and capacity against N."""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.analysis.theory_figures import (
    capacity_figure,
    capacity_frame,
    dynamics_temperature,
    temperature_figure,
    temperature_frame,
    temperature_lines_figure,
)
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import NoData
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.query import open_cube


def cube(tmp_path, raw):
    path = str(tmp_path / f"{raw['name']}.zarr")
    run(Cube.create_or_open(path, spec_mod.from_dict(raw)), SerialExecutor(), progress=False)
    return open_cube(path)


def test_kde_capacity_grows_with_N_only_for_a_shrinking_bandwidth(tmp_path):
    """h = 1.6 / sqrt(N) gives capacity ~ exp(0.8 N / 2.56): from N = 16 to 32 more than x8 (the
    module test measured 7 -> 1218); h = 0.4 fixed gives ~exp(5) whatever N: within x2."""
    ds = cube(
        tmp_path,
        {
            "name": "kde",
            "root_seed": 1,
            "seeds": 1,
            "noise": [0.1],
            "P_test": 0,
            "retrieval": {"train_starts": 50, "test_starts": 0, "random_starts": 0},
            "datasets": {"random": {"N": [16, 32], "P": [4, 8, 16, 32, 64, 128, 256, 512]}},
            "rules": {
                "fixed": {"kind": "kde", "bandwidth": 0.4},
                "shrinking": {"kind": "kde", "bandwidth": 1.6, "bandwidth_scaling": "inv_sqrt_N"},
            },
        },
    )
    cap = capacity_frame(ds).set_index(["rule", "N"])["capacity"]
    assert cap[("shrinking", 32)] >= 8 * cap[("shrinking", 16)]
    assert cap[("fixed", 32)] <= 2 * cap[("fixed", 16)]
    assert capacity_figure(ds, tmp_path / "cap").exists()


def test_temperature_axis_joins_tap_beta_and_glauber_temperature(tmp_path):
    ds = cube(
        tmp_path,
        {
            "name": "tap",
            "root_seed": 2,
            "seeds": 1,
            "noise": [0.05],
            "P_test": 0,
            "retrieval": {"train_starts": 5, "test_starts": 0, "random_starts": 0},
            "datasets": {"random": {"N": [300], "alpha": [0.02, 0.3]}},
            "rules": {
                "tap": {"kind": "hebb", "dynamics": "tap", "dynamics_params": {"beta": [5.0, 1.25]}},
                "mc": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": {"temperature": [0.2, 0.8]}},
            },
        },
    )
    frame = temperature_frame(ds)
    assert sorted(frame["T"].unique().tolist()) == [0.2, 0.8]
    means = frame.groupby(["dynamics", "T", "alpha"])["m_train"].mean()
    # T = 0.2 < T_M(0.02) = 0.73: retrieval by both methods; alpha = 0.3 > alpha_c: none
    assert means[("tap", 0.2, 0.02)] > 0.95 and means[("glauber", 0.2, 0.02)] > 0.9
    assert means[("tap", 0.2, 0.3)] < 0.5 and means[("glauber", 0.2, 0.3)] < 0.5
    assert np.isfinite(means.values).all()
    assert temperature_figure(ds, tmp_path / "T").exists()
    assert temperature_lines_figure(ds, tmp_path / "T_lines").exists()
    # A dataset's sample temperature (the spin glass's) is another quantity: it takes the plain
    # name, on the dataset axis, and the dynamics' temperature is then dynamics_temperature.
    assert dynamics_temperature(ds) == ("temperature", "beta")
    renamed = ds.rename({"temperature": "dynamics_temperature"}).assign_coords(temperature=("dataset", [1.0]))
    assert dynamics_temperature(renamed) == ("dynamics_temperature", "beta")
    sample_only = ds.drop_vars(["temperature", "beta"]).assign_coords(temperature=("dataset", [1.0]))
    assert dynamics_temperature(sample_only) == (None, None)
    with pytest.raises(NoData, match="no rule of this cube has a temperature"):
        temperature_frame(sample_only)
