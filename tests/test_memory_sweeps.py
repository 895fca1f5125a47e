"""The ELBO and attention sweeps through the runner into a cube, and the tables read back from it."""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.analysis import memories
from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import BUNDLED
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube


def _run(tmp_path, name: str, shrink: dict) -> str:
    import tomllib

    raw = tomllib.loads((BUNDLED / f"{name}.toml").read_text())
    for key, value in shrink.items():
        table, field = key.split(".", 1) if "." in key else (None, key)
        if table is None:
            raw[field] = value
        else:
            entry, param = field.rsplit(".", 1)
            raw[table][entry][param] = value
    sweep = spec_mod.from_dict(raw)
    path = str(tmp_path / f"{name}.zarr")
    report = run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    assert report.failed == 0 and report.remaining == 0
    return path


@pytest.mark.parametrize(
    "name", ["elbo_memory_laptop", "elbo_memory_paper", "attention_sphere_laptop", "attention_sphere_paper"]
)
def test_bundled_specs_load(name):
    sweep = spec_mod.load(BUNDLED / f"{name}.toml")
    assert sweep.retrieval.store_couplings


def test_elbo_sweep_cube_gives_components_and_capacities(tmp_path):
    shrink = {"seeds": 1, "datasets.mixture.N": [64], "datasets.mixture.P": [64, 128]}
    path = _run(tmp_path, "elbo_memory_laptop", shrink)
    frame = memories.elbo_table(path, verify=16)  # every task's rerun model equals the stored one
    assert len(frame) == 16
    clusters = frame[frame["per_component"] == 8].set_index("rule")
    for rule in ("elbo_memory", "crp_memory"):
        # means of 8 examples: a prototype is missed only by >= 2 wrong sites (ties at 4 of 8 flips)
        assert (clusters.loc[rule, "components_found"] >= 0.85).all()
        assert (clusters.loc[rule, "recovered_components"] >= 0.98).all()
        assert (clusters.loc[rule, "test_best_feature"] >= 0.99).all()
    assert (clusters.loc["elbo_memory", "components_as_oracle"] == 1.0).all()
    narrow = clusters.loc["kde_narrow"]  # keeps the examples: retrieves them, not the prototypes
    assert (narrow["success_train"] >= 0.9).all() and (narrow["recovered_components"] < 0.95).all()
    cap = memories.capacity(frame, "components_found", ["per_component", "rule"], level=0.85)
    got = cap.set_index(["per_component", "rule"])["capacity_components_found"]
    assert got[(8, "elbo_memory")] == 128 and got[(1, "elbo_memory")] == 0
    stored = memories.metric_frame(path, "components_found")  # what the cell wrote into the cube
    joined = frame.merge(stored, on=["dataset", "N", "P", "rule", "seed"], suffixes=("", "_cube"))
    assert len(joined) == 16
    np.testing.assert_array_equal(joined["components_found"].astype(np.float32), joined["components_found_cube"])


def test_attention_sweep_cube_clusters_equal_the_rerun_counts(tmp_path):
    path = _run(
        tmp_path,
        "attention_sphere_laptop",
        {
            "seeds": 1,
            "datasets.sphere_tokens.N": [2, 16],
            "datasets.sphere_tokens.P": [16],
            "rules.residual.beta": [1.0, 64.0],
            "rules.attention.beta": [1.0, 64.0],
        },
    )
    frame = memories.attention_table(path)
    assert len(frame) == 12  # residual at two depths, pure attention at one; 2 d x 2 beta each
    np.testing.assert_array_equal(frame["clusters_stored"], frame["n_clusters"])
    stored = memories.metric_frame(path, "n_clusters")  # what the cell wrote into the cube
    joined = frame.merge(stored, on=["dataset", "N", "P", "rule", "seed"], suffixes=("", "_cube"))
    assert len(joined) == 12
    np.testing.assert_array_equal(joined["n_clusters"], joined["n_clusters_cube"])
    small = frame[frame["beta"] == 1.0]
    assert (small["n_clusters"] == 1).all() and (small["cluster_steps"] > 0).all()
    high_d = frame[(frame["beta"] == 64.0) & (frame["d"] == 16)]
    assert (high_d["n_clusters"] == 16).all()
