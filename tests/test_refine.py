"""`amsweep refine`: boundaries located to a tolerance by growing the cube; kill -9 between rounds
and mid-round, then resumed, gives the cube of an uninterrupted refine (issue 16)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from amsweep.analysis import boundary
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.refine import candidates, cell_counts, exact_alpha, refine
from amsweep.sweeps.runner import run
from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, PENDING
from amsweep.storage.query import open_cube
from tests.conftest import assert_same_cube, latest_run_done

HEBB = """
name = "hebb_refine_test"
root_seed = 9
seeds = {seeds}
noise = [0.0]
P_test = 0
[retrieval]
train_starts = 1000
test_starts = 0
random_starts = 0
{datasets}
[rules.hebb]
"""
SMALL = HEBB.format(
    seeds=4,
    datasets="\n".join(
        f'[datasets.n{N}]\nkind = "random"\nN = [{N}]\nalpha = [0.06, 0.14, 0.22, 0.30, 0.38]' for N in (100, 200)
    ),
)
# N = 800 cells take ~30 ms: a round of 3 values x 16 seeds lasts long enough to be killed in.
KILL = HEBB.format(seeds=16, datasets='[datasets.n800]\nkind = "random"\nN = [800]\nalpha = [0.08, 0.16, 0.24, 0.32]')
TARGET = boundary.target("m_train", 0.63, "down")


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


class StopAfterTotal(SerialExecutor):
    """Ctrl-C after k cells in all, counted across the rounds (each round is a new run)."""

    def __init__(self, k: int) -> None:
        self.left = k

    def map_unordered(self, fn, jobs, total=None):
        for item in super().map_unordered(fn, jobs):
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            yield item


def test_refine_locates_each_boundary_and_the_stored_spec_rebuilds_the_cube(tmp_path):
    base = spec_mod.load(spec(tmp_path, SMALL))
    path = str(tmp_path / "refined.zarr")
    lines: list[str] = []
    report = refine(base, path, TARGET, "alpha", 0.01, 8, SerialExecutor(), say=lines.append)
    assert report.converged and not report.interrupted and report.rounds == 3
    assert "round 1: alpha = [0.34] for dataset n100" in lines and "round 3: alpha = [0.23] for dataset n200" in lines
    t = report.table
    assert (t["found"] == "yes").all() and (t["width"] <= 0.01 + 1e-9).all()
    assert ((t["bracket_low"] <= t["crossing"]) & (t["crossing"] <= t["bracket_high"])).all()
    stored = Cube.open(path).sweep
    for d in stored.datasets:  # every added value is exact and lands on its own P
        assert len({round(a * d.N[0]) for a in d.load}) == len(d.load) == 8
        assert all(len(repr(a)) <= 6 for a in d.load)
    assert (report.cells, report.uniform) == (64, 264) == cell_counts(stored, "load", 0.01)
    again = refine(base, path, TARGET, "alpha", 0.01, 8, SerialExecutor(), say=lines.append)
    assert again.converged and Cube.open(path).sweep.canonical == stored.canonical  # nothing to add
    rebuilt = str(tmp_path / "rebuilt.zarr")
    run(Cube.create_or_open(rebuilt, stored), SerialExecutor(), progress=False)
    assert_same_cube(path, rebuilt)


def test_ctrl_c_mid_round_then_resume_equals_uninterrupted(tmp_path):
    base = spec_mod.load(spec(tmp_path, SMALL))
    straight, stopped = str(tmp_path / "straight.zarr"), str(tmp_path / "stopped.zarr")
    refine(base, straight, TARGET, "alpha", 0.01, 8, SerialExecutor(), say=lambda _: None)
    first = refine(base, stopped, TARGET, "alpha", 0.01, 8, StopAfterTotal(40 + 8 + 3), say=lambda _: None)
    assert first.interrupted  # 3 cells into round 2 (40 in round 0, 8 in round 1)
    status = Cube.open(stopped).status()
    assert (status == DONE).sum() == 51 and (status == PENDING).sum() == 5
    refine(base, stopped, TARGET, "alpha", 0.01, 8, SerialExecutor(), say=lambda _: None)
    assert_same_cube(straight, stopped)
    assert Cube.open(stopped).sweep.canonical == Cube.open(straight).sweep.canonical


def test_added_values_are_exact_and_unique_in_P():
    assert exact_alpha(229, 1600) == 0.1431 and round(0.1431 * 1600) == 229
    assert exact_alpha(1, 3) == 0.3333
    assert candidates(0.14, 0.18, 1, "alpha", 200, [0.14, 0.18]) == [0.16]
    assert candidates(0.14, 0.145, 1, "alpha", 200, [0.14, 0.145]) == []  # one pattern apart
    assert candidates(0.1, 0.2, 3, "alpha", 400, [0.1, 0.2, 0.125]) == [0.15, 0.175]
    assert candidates(40, 48, 3, "P", 0, [40, 48]) == [42, 44, 46]


def test_refine_along_N_adds_network_sizes(tmp_path):
    """At fixed alpha = 0.2 Hebb's m_train falls with N (alpha_c(N) decreases through 0.2)."""
    text = HEBB.format(seeds=4, datasets='[datasets.r]\nkind = "random"\nN = [100, 200, 400, 800]\nalpha = [0.2]')
    base = spec_mod.load(spec(tmp_path, text))
    path = str(tmp_path / "along_n.zarr")
    report = refine(base, path, TARGET, "N", 20, 8, SerialExecutor(), say=lambda _: None)
    row = report.table.iloc[0]
    assert report.converged and row["found"] == "yes" and row["width"] <= 20
    stored = Cube.open(path).sweep
    assert {100, 200, 400, 800} <= set(stored.N_values) and len(stored.N_values) == 4 + report.rounds
    assert list(stored.N_values) == sorted(stored.N_values)  # added values land mid-axis: canonical order
    assert open_cube(path)["N"].values.tolist() == list(stored.N_values)
    assert all(isinstance(n, int) for n in stored.N_values)
    assert row["bracket_low"] <= report.added[-1]["r"][-1] <= row["bracket_high"]  # the last bisection point
    rebuilt = str(tmp_path / "rebuilt.zarr")
    run(Cube.create_or_open(rebuilt, stored), SerialExecutor(), progress=False)
    assert_same_cube(path, rebuilt)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "refine", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_at(proc: subprocess.Popen, line: str) -> list[str]:
    """Read the refine's output until ``line``, then SIGKILL it (no chance to flush)."""
    seen = []
    for text in proc.stdout:
        seen.append(text.rstrip())
        if text.startswith(line):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "\n".join(seen)
    return seen


def _done_in_this_round(cube: str) -> int:
    return latest_run_done(cube)


@pytest.mark.slow
def test_refine_killed_between_rounds_and_mid_round_resumes_to_the_same_cube(tmp_path):
    spec_path = spec(tmp_path, KILL)
    flags = ["--metric", "m_train", "--threshold", "0.63", "--direction", "down", "--along", "alpha"]
    flags += ["--tol", "0.005", "--points", "3", "--executor", "serial", "--quiet"]
    reference = str(tmp_path / "reference.zarr")
    refine(spec_mod.load(spec_path), reference, TARGET, "alpha", 0.005, 8, SerialExecutor(), points=3, say=print)
    killed = str(tmp_path / "killed.zarr")

    _kill_at(_cli(str(spec_path), "--out", killed, *flags), "round 1: done")  # between rounds
    cube = Cube.open(killed)
    assert cube.count_pending() == 0 and len(cube.sweep.load_values) == 4 + 3
    assert list(cube.sweep.load_values) == sorted(cube.sweep.load_values)  # bracket values land mid-axis

    proc = _cli(str(spec_path), "--out", killed, *flags)
    seen = []
    for text in proc.stdout:  # mid-round: after round 2's first flush, before its last
        seen.append(text.rstrip())
        if text.startswith("round 2: running"):
            deadline = time.time() + 60
            while _done_in_this_round(killed) == 0 and time.time() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    status = Cube.open(killed).status()
    assert 0 < (status == PENDING).sum() < 48 and (status == DONE).sum() > 112, "\n".join(seen)

    final = _cli(str(spec_path), "--out", killed, *flags)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out
    assert "round 1: alpha = " in out and "(already stored)" in out and "cells: " in out
    assert check(Cube.open(killed)).ok
    assert_same_cube(reference, killed)
    assert Cube.open(killed).sweep.canonical == Cube.open(reference).sweep.canonical
    assert np.isin(np.asarray(Cube.open(killed).sweep.load_values), [0.08, 0.16, 0.24, 0.32]).sum() == 4
