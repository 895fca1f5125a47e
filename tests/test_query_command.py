"""``amsweep query`` (issue 24): several metrics at once, ``n`` beside every mean, CSV at the
values' own precision, help on every option, every command in the top-level help, ``P`` in
``--where``. One cube of 12 tasks written in process; the commands run in process too."""

from __future__ import annotations

import argparse
import copy
import csv

import numpy as np
import pandas as pd
import pytest

from amsweep.pipeline.cell import run_cell
from amsweep.storage.cube import Cube
from amsweep.storage.query import open_cube, select, to_frame
from amsweep.sweeps.cli import build_parser, main


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    from amsweep.pipeline import spec as spec_mod
    from tests.conftest import SMALL

    raw = copy.deepcopy(SMALL)
    raw["rules"]["plm"]["clip"] = [0.0, 1.0]  # a coordinate NaN for hebb: pandas' mean is float64 there
    sweep = spec_mod.from_dict(raw)
    path = str(tmp_path_factory.mktemp("query") / "cube.zarr")
    with Cube.create_or_open(path, sweep) as c:
        c.write([run_cell(sweep.job(t)) for t in sweep.tasks()])
    return path


def query_csv(capsys, tmp_path, cube: str, *args: str) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    out = tmp_path / "q.csv"
    assert main(["query", cube, *args, "--csv", str(out)]) == 0, capsys.readouterr().err
    with open(out, newline="") as f:
        text = list(csv.DictReader(f))
    return pd.read_csv(out), text


def test_several_metrics_each_with_its_mean_sem_and_count(cube, capsys, tmp_path):
    """``--metric m_train,m_test`` used to be refused as one unknown metric."""
    both, _ = query_csv(capsys, tmp_path, cube, "--metric", "m_train,fixed_point_fraction", "--mean")
    for metric in ("m_train", "fixed_point_fraction"):
        assert {metric, f"{metric}_sem", f"{metric}_n"} <= set(both.columns)
        alone, _ = query_csv(capsys, tmp_path, cube, "--metric", metric, "--mean")
        assert {metric, f"{metric}_sem", "n"} <= set(alone.columns)  # one metric: its count is plain n
        keys = [c for c in alone.columns if c not in (metric, f"{metric}_sem", "n")]
        joined = both.merge(alone, on=keys, suffixes=("", "_alone"))
        assert len(joined) == len(both) > 0
        np.testing.assert_array_equal(joined[metric], joined[f"{metric}_alone"])
        np.testing.assert_array_equal(joined[f"{metric}_n"], joined["n"])
        assert (joined["n"] == 2).all()  # two seeds of SMALL behind every mean
    assert len(both) == 2 * 3 * 2  # alpha x rule x noise: the per-task metric repeats along noise
    repeated, _ = query_csv(capsys, tmp_path, cube, "--metric", "m_train", "--metric", "fixed_point_fraction", "--mean")
    pd.testing.assert_frame_equal(repeated, both)
    assert main(["query", cube, "--metric", "m_train,m_train"]) == 2
    assert "m_train given twice" in capsys.readouterr().err


def test_the_printed_table_shows_n_beside_every_mean(cube, capsys):
    assert main(["query", cube, "--metric", "m_train,m_test", "--where", "noise=0.15", "--mean"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[-6:] == ["m_train", "m_train_sem", "m_train_n", "m_test", "m_test_sem", "m_test_n"]


def test_csv_writes_float32_values_and_means_at_float32_precision(cube, capsys, tmp_path):
    """A mean of float32 values used to be written with float64's 17 digits (0.6927083432674408)."""
    for args in (
        ["--metric", "m_train", "--mean", "--where", "noise=0.15"],  # a selection made pandas' mean float64
        ["--metric", "m_train"],
        ["--metric", "m_train,m_test", "--mean"],
    ):
        frame, text = query_csv(capsys, tmp_path, cube, *args)
        columns = [c for c in frame.columns if c.startswith(("m_train", "m_test")) and not c.endswith("_n")]
        values = [row[c] for row in text for c in columns if row[c]]
        assert values and all(str(np.float32(v)) == v for v in values), values  # shortest float32 text
    stored = to_frame(open_cube(cube), "m_train")["m_train"].to_numpy()
    per_seed, _ = query_csv(capsys, tmp_path, cube, "--metric", "m_train")
    np.testing.assert_array_equal(per_seed["m_train"].to_numpy(np.float32), stored)  # reads back bit for bit
    means, _ = query_csv(capsys, tmp_path, cube, "--metric", "m_train", "--mean")
    exact = to_frame(open_cube(cube), "m_train").groupby(["alpha", "rule", "noise"])["m_train"].mean()
    got = means.set_index(["alpha", "rule", "noise"])["m_train"]
    np.testing.assert_array_equal(got.loc[exact.index].to_numpy(np.float32), exact.to_numpy().astype(np.float32))


def test_where_P_selects_as_the_readme_says(cube, capsys):
    """P of an alpha cube (N = 48: alpha 0.05 is P 2, 0.3 is P 14) was refused as spanning (N, alpha)."""
    assert main(["query", cube, "--metric", "m_train", "--where", "P=14", "--mean"]) == 0
    out = capsys.readouterr().out
    assert "0.30" not in out.splitlines()[0] and len(out.splitlines()) == 1 + 3 * 2  # rule x noise rows
    expected = to_frame(select(open_cube(cube), {"alpha": ["0.3"]}), "m_train")
    assert len(to_frame(select(open_cube(cube), {"P": ["14"]}), "m_train")) == len(expected) > 0


def sub_commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["query", "status", "check", "upgrade", "run", "specs"])
def test_every_option_has_help(command):
    """``query --metric``, ``--max-rows`` and the cube arguments had none."""
    parser = sub_commands()[command]
    bare = [a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not bare, f"amsweep {command}: no help for {bare}"


def test_top_level_help_names_every_command(capsys):
    """The description listed run, status, query, phase, report, check, specs: not boundary, refine, upgrade."""
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    description = " ".join(text.split("\n\n")[1].split())
    for name in sub_commands():
        assert name in description.split("commands: ")[1], name
        assert any(line.split()[:1] == [name] for line in text.splitlines()), f"{name} has no help line"
