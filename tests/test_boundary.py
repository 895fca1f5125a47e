"""`amsweep boundary` on cubes written with a known crossing, and the finite-size fit (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amsweep.analysis import boundary, scaling
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.metric_table import METRICS
from amsweep.sweeps.cli import main
from amsweep.pipeline.errors import QueryError
from amsweep.storage import query
from amsweep.storage.cube import Cube

ALPHAS = [round(0.05 + 0.025 * i, 4) for i in range(15)]  # 0.05 ... 0.40
CENTER = {100: 0.2125, 400: 0.1625}  # midway between grid points: linear interpolation is exact
SEEDS = 12


def logistic(alpha: float, center: float) -> float:
    """0.3 + 0.7 / (1 + exp((alpha - c) / 0.02)): crosses 0.65 exactly at c, symmetric about it."""
    return 0.3 + 0.7 / (1.0 + np.exp((alpha - center) / 0.02))


def synthetic_cube(path: str) -> str:
    """A cube written through the storage API. At noise 0, m_train is a logistic in alpha centred
    on CENTER[N] plus seed noise (sd 0.02). At noise 0.1 every training start is retrieved
    (m_train = 1) and the class turns from memorizing to generalizing between alpha = 0.2 and
    0.225 in 8 of the 12 seeds, one grid step later in the other 4."""
    raw = {
        "name": "synthetic",
        "root_seed": 1,
        "seeds": SEEDS,
        "noise": [0.0, 0.1],
        "P_test": 0,
        "retrieval": {"train_starts": 5, "test_starts": 0, "random_starts": 0},
        "datasets": {"random": {"N": sorted(CENTER), "alpha": ALPHAS}},
        "rules": {"hebb": {}},
    }
    sweep = spec_mod.from_dict(raw)
    rng = np.random.default_rng(7)
    results = []
    for t in sweep.tasks():
        switch = 0.2 if t.seed < 8 else 0.225
        m_test, best = (0.8, 0.6) if t.load > switch + 1e-9 else (0.3, 0.8)
        values = {  # every declared metric (Cube.write refuses fewer): NaN, or 0 where always present
            name: np.full((2,) if m.per_noise else (), 0.0 if m.always else np.nan, dtype=m.dtype)
            for name, m in METRICS.items()
        }
        values |= {
            "m_train": np.array([logistic(t.load, CENTER[t.N]) + rng.normal(0, 0.02), 1.0]),
            "m_test": np.full(2, m_test),
            "test_best_train": np.full(2, best),
        }
        results.append(CellResult(t.index, values))
    with Cube.create_or_open(path, sweep) as cube:
        cube.write(results)
    return path


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory) -> str:
    return synthetic_cube(str(tmp_path_factory.mktemp("boundary") / "synthetic.zarr"))


def table(path: str, threshold: float = 0.65, direction: str = "down", where: dict | None = None) -> pd.DataFrame:
    tgt = boundary.target("m_train", threshold, direction)
    return boundary.boundary_table(query.select(query.open_cube(path), where or {}), tgt, "alpha")


def test_crossing_interval_and_bracket_of_a_known_curve(cube_path):
    t = table(cube_path)
    assert list(t.columns[:4]) == ["dataset", "N", "rule", "noise"]
    for N, truth in CENTER.items():
        row = t[(t["N"] == N) & (t["noise"] == 0.0)].iloc[0]
        assert row["found"] == "yes" and row["seeds"] == SEEDS and row["points"] == len(ALPHAS)
        assert row["bracket_low"] < truth < row["bracket_high"]
        assert row["bracket_high"] - row["bracket_low"] == pytest.approx(0.025)
        assert row["ci_low"] <= truth <= row["ci_high"], row.to_dict()
        assert row["ci_high"] - row["ci_low"] < 0.01
        assert abs(row["crossing"] - truth) < 0.003
    retrieved = t[t["noise"] == 0.1]  # m_train = 1 everywhere: the boundary lies past the grid
    assert set(retrieved["found"]) == {"beyond the last point"} and retrieved["crossing"].isna().all()
    assert t.equals(table(cube_path)), "the bootstrap must be deterministic"


def test_no_crossing_and_direction(cube_path):
    t = table(cube_path, threshold=0.1)  # the curve never goes below 0.3 (noise aside)
    assert set(t["found"]) == {"beyond the last point"} and t["crossing"].isna().all()
    up = table(cube_path, direction="up", where={"noise": ["0.0"]})  # the curve only falls
    assert set(up["found"]) == {"before the first point"}


def test_class_change_crossing(cube_path):
    ds = query.select(query.open_cube(cube_path), {"noise": ["0.1"]})
    gen = boundary.boundary_table(ds, boundary.target(None, None, "up", "generalizing"), "alpha")
    mem = boundary.boundary_table(ds, boundary.target(None, None, "down", "memorizing"), "alpha")
    # fraction generalizing 0 -> 2/3 -> 1 over alpha 0.2, 0.225, 0.25: through 1/2 at 0.2 + 0.025 * 3/4;
    # fraction memorizing 1 -> 1/3 -> 0: the same point
    for t in (gen, mem):
        assert len(t) == 2 and (t["found"] == "yes").all()
        assert t["crossing"].to_numpy() == pytest.approx([0.21875, 0.21875])
        assert (t["bracket_low"] == 0.2).all() and (t["bracket_high"] == 0.225).all()
        assert (t["ci_low"] <= 0.21875).all() and (t["ci_high"] >= 0.21875).all()


def test_cli_table_csv_curves_and_extrapolation(cube_path, tmp_path, capsys):
    csv, fig, curves = tmp_path / "b.csv", tmp_path / "fit.png", tmp_path / "curves.png"
    argv = ["boundary", cube_path, "--metric", "m_train", "--threshold", "0.65", "--direction", "down"]
    rc = main(argv + ["--where", "noise=0.0", "--csv", str(csv), "--curves", str(curves)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "falls through 0.65" in out and "wrote 2 rows" in out
    frame = pd.read_csv(csv)
    assert len(frame) == 2 and {"crossing", "ci_low", "ci_high", "bracket_low", "bracket_high", "family"} <= set(
        frame.columns
    )
    assert frame.sort_values("N")["crossing"].to_numpy() == pytest.approx([0.2125, 0.1625], abs=0.003)
    assert curves.stat().st_size > 10_000
    rc = main(argv + ["--where", "noise=0.0", "--extrapolate", "--nu", "0.5", "--figure", str(fig)])
    assert rc == 0 and "alpha_c(inf) =" in capsys.readouterr().out and fig.stat().st_size > 10_000
    assert main(argv + ["--extrapolate"]) == 2  # two N values cannot fix three parameters
    assert "needs at least 3 N values" in capsys.readouterr().err


def test_bad_requests_are_one_line_errors(cube_path, capsys):
    assert main(["boundary", cube_path, "--metric", "m_train"]) == 2
    assert "give --metric and --threshold" in capsys.readouterr().err
    assert main(["boundary", cube_path, "--metric", "nope", "--threshold", "1"]) == 2
    assert main(["boundary", cube_path, "--class", "wise"]) == 2
    assert main(["boundary", cube_path, "--metric", "m_train", "--threshold", "1", "--along", "P"]) == 2
    with pytest.raises(QueryError):
        boundary.target("class", 0.5)


def test_first_crossing_interpolates_and_respects_direction():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 0.0, 1.0, np.nan])
    assert boundary.first_crossing(x, y, 0.5, "down") == (0, 0.5)
    assert boundary.first_crossing(x, y, 0.5, "up") == (1, 1.5)
    assert boundary.first_crossing(x, y, 2.0, "any") == (-1, pytest.approx(np.nan, nan_ok=True))
    gap = np.array([1.0, np.nan, 0.0, 0.0])  # a missing point is skipped, not a crossing
    assert boundary.first_crossing(x, gap, 0.5, "down") == (0, 1.0)


@pytest.mark.parametrize("nu", [None, 0.5])
def test_extrapolation_recovers_known_alpha_inf_and_nu(nu):
    N = np.array([200, 400, 800, 1600, 3200])
    rng = np.random.default_rng(3)
    sigma = np.full(N.size, 0.0005)
    truth = 0.138 + 0.6 * N**-0.5
    fit = scaling.fit(N, truth + rng.normal(0, 0.0005, N.size), sigma, nu=nu)
    assert fit.alpha_inf_low <= 0.138 <= fit.alpha_inf_high
    assert fit.alpha_inf == pytest.approx(0.138, abs=3 * fit.alpha_inf_se)
    assert fit.nu == pytest.approx(0.5, abs=3 * fit.nu_se + 1e-12)
    assert "reference 0.138 inside" in fit.line(0.138)
    exact = scaling.fit(N, truth, sigma, nu=nu)
    assert exact.alpha_inf == pytest.approx(0.138, abs=1e-6) and exact.chi2 < 1e-6
