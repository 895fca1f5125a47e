"""attack24 (issue 24, query): findings as strict xfails. One tiny cube (12 tasks) written in process."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from amsweep.pipeline.cell import run_cell
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    from amsweep.pipeline import spec as spec_mod
    from tests.conftest import SMALL

    sweep = spec_mod.from_dict(copy.deepcopy(SMALL))
    path = str(tmp_path_factory.mktemp("a24q") / "cube.zarr")
    with Cube.create_or_open(path, sweep) as c:
        c.write([run_cell(sweep.job(t)) for t in sweep.tasks()])
    return path


def test_every_mean_has_a_whole_count_even_where_its_metric_has_none(cube, capsys, tmp_path):
    """basin_mean is not computed by SMALL (no basin settings): 0 seeds behind it everywhere. Joined
    with m_train, `basin_mean_n` is an empty CSV field (NaN) on every row: the promised 'n beside
    every mean' is missing exactly where it matters (a reader cannot tell 0 seeds from a gap)."""
    out = tmp_path / "q.csv"
    assert main(["query", cube, "--metric", "m_train,basin_mean", "--mean", "--csv", str(out)]) == 0
    capsys.readouterr()
    table = pd.read_csv(out)
    assert (table["m_train_n"] == 2).all()  # two seeds behind every m_train mean (as expected)
    assert table["basin_mean"].isna().all()  # no value: right
    assert table["basin_mean_n"].notna().all() and (table["basin_mean_n"] == 0).all(), table["basin_mean_n"].tolist()
