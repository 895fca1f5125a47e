"""``retrieved_fraction``: the capacity as the load where half the patterns are retrieved (issue 22).

The mean final overlap m_train crosses 0.63 where half the patterns are retrieved only if the
lost ones end at 0.3; they end higher at small N (0.37-0.43), which biased that crossing in an
N-dependent way. The new metric counts retrieved patterns directly. Here a real sweep at two N
is run into a cube that keeps its final states, and the boundary `amsweep boundary` reads from
``retrieved_fraction`` is checked against a count of retrieved patterns made in this test from
those relaxed states and the regenerated patterns.
"""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.analysis import boundary
from amsweep.pipeline import metrics as M
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import make_data
from amsweep.storage import query
from tests.test_sweep_run import run_serial

ALPHAS = [0.10, 0.14, 0.18, 0.22, 0.26, 0.30, 0.34]
SEEDS = 4
SPEC = {
    "name": "half_retrieved",
    "root_seed": 22,
    "seeds": SEEDS,
    "noise": [0.0],
    "P_test": 0,
    "retrieval": {"train_starts": 1000, "test_starts": 0, "random_starts": 0, "store_magnetisations": True},
    "datasets": {
        "n100": {"kind": "random", "N": [100], "alpha": ALPHAS},
        "n300": {"kind": "random", "N": [300], "alpha": ALPHAS},
    },
    "rules": {"hebb": {}},
    "dynamics": {"asynchronous": {"max_sweeps": 100}},
}


def first_down_crossing(x: list[float], y: list[float], level: float) -> float:
    """Written here, not taken from analysis.boundary: linear interpolation at the first fall through level."""
    for i in range(len(x) - 1):
        if y[i] >= level > y[i + 1]:
            return x[i] + (y[i] - level) * (x[i + 1] - x[i]) / (y[i] - y[i + 1])
    return float("nan")


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> tuple[str, spec_mod.Sweep]:
    sweep = spec_mod.from_dict(SPEC)
    path = str(tmp_path_factory.mktemp("rf") / "cube.zarr")
    run_serial(path, sweep)
    return path, sweep


def test_half_retrieved_crossing_matches_an_independent_count(cube) -> None:
    path, sweep = cube
    counted: dict[tuple[int, float], list[float]] = {}
    overlaps = []
    for task, states in query.magnetisations_by_task(path):
        X = make_data(task, sweep.root_seed).train
        m = (states[0] @ X.T.astype(np.float32)).diagonal() / task.N  # start b relaxed from pattern b
        overlaps.append(m)
        counted.setdefault((task.N, task.load), []).append(float(np.mean(m >= 0.9)))
    overlaps = np.concatenate(overlaps)
    # The cut sits in the valley of a bimodal distribution: retrieved near 1, lost near 0.3-0.6.
    density = np.histogram(overlaps, [0.3, 0.6, 0.8, 0.9, 1.0])[0] / np.array([0.3, 0.2, 0.1, 0.1])
    assert density[2] < density[0] / 2 and density[2] < density[3] / 4

    table = boundary.boundary_table(query.open_cube(path), boundary.target("retrieved_fraction", 0.5, "down"))
    assert len(table) == 2
    crossings = {}
    for N in (100, 300):
        means = [float(np.mean(counted[(N, a)])) for a in ALPHAS]
        assert len(counted[(N, ALPHAS[0])]) == SEEDS
        row = table[table["N"] == N].iloc[0]
        assert row["found"] == "yes"
        crossings[N] = first_down_crossing(ALPHAS, means, 0.5)
        assert row["crossing"] == pytest.approx(crossings[N], abs=1e-5)
        assert row["ci_low"] <= row["crossing"] <= row["ci_high"]
    assert 0.12 < crossings[300] < crossings[100] < 0.30  # above 0.138 at finite N, and falling with N


def test_retrieved_fraction_is_declared_per_noise_and_distinct_from_success_train() -> None:
    metric = M.METRICS["retrieved_fraction"]
    assert metric.per_noise and not metric.always  # cubes made before it hold NaN there
    assert M.RETRIEVED_OVERLAP == 0.9 < M.SUCCESS_OVERLAP
