"""Every dataset kind end to end through Ray into one cube (sweeps/all_datasets_smoke.toml)."""

from __future__ import annotations

import numpy as np

from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import BUNDLED
from amsweep.pipeline.executors import RayExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, NOT_APPLICABLE
from amsweep.storage.query import open_cube, to_frame


def test_every_dataset_runs_through_ray_into_one_cube(tmp_path, ray_local):
    sweep = spec_mod.load(BUNDLED / "all_datasets_smoke.toml")
    path = str(tmp_path / "all.zarr")
    report = run(Cube.create_or_open(path, sweep), RayExecutor(), progress=False)
    assert report.failed == 0, report.errors
    ds = open_cube(path)
    done = to_frame(ds, "m_train")
    assert set(done["dataset_kind"]) == {"random", "random_features", "mnist", "spin_glass", "proteins"}
    # the Ising-only rule is not applicable on Potts data, and says why
    status = ds["status"].sel(rule="storkey", dataset="proteins").values
    assert (status[np.isin(status, [DONE, NOT_APPLICABLE])] == NOT_APPLICABLE).all()
    reasons = {f["error"] for f in Cube.open(path).failures()}
    assert reasons == {"storkey is Ising-only (q=2)"}
    assert report.not_applicable == 2
    # dataset-specific metrics are present exactly where they apply
    sim = to_frame(ds, "coupling_similarity")
    assert set(sim["dataset_kind"]) == {"spin_glass"} and (sim["coupling_similarity"].abs() <= 1).all()
    feat = to_frame(ds, "test_best_feature")
    assert set(feat["dataset_kind"]) == {"random_features"}
    assert sorted(set(feat["alpha_D"])) == [0.25, 0.5]
    # Potts overlaps live in [-1/(q-1), 1]; Ising ones in [-1, 1]
    potts = done[done["dataset_kind"] == "proteins"]["m_train"]
    assert (potts >= -1 / 20 - 1e-6).all() and (potts <= 1).all()
