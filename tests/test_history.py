"""Run history (issue 23): one record per run in the cube, kill-safe; `status --history`, `--json`,
grouped `--errors`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage import history
from amsweep.storage.cube import Cube
from amsweep.storage.objects import objects_at
from amsweep.storage.schema import DONE
from amsweep.sweeps.cli import main
from amsweep.sweeps.runner import run
from tests.conftest import StopAfter

# First run: 8 light tasks. The extension adds 32 PLM tasks at N = 300 (~0.1 s each): after its
# first flush seconds of work remain, so the kill lands mid-run even on a fast machine.
BASE = """
name = "hist"
root_seed = 3
seeds = 2
noise = [0.0]
P_test = 4
[retrieval]
train_starts = 4
test_starts = 4
random_starts = 2
[datasets.random]
N = [NS]
alpha = [0.1, 0.3]
[rules.hebb]
[rules.plm]
epochs = 400
"""


def _records(cube: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(cube, "_amsweep", "runs").glob("*.json"))]


def _status(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["status", *argv]) == 0
    return capsys.readouterr().out


def test_a_run_a_killed_extension_and_a_resume_are_three_runs_with_their_endings(tmp_path, capsys):
    base_path, grown_path = tmp_path / "base.toml", tmp_path / "grown.toml"
    base_path.write_text(BASE.replace("NS", "32"))
    grown_path.write_text(BASE.replace("NS", "32, 300").replace("seeds = 2", "seeds = 8"))
    first = spec_mod.load(base_path)
    cube = str(tmp_path / "h.zarr")
    report = run(Cube.create_or_open(cube, first), SerialExecutor(), progress=False)
    assert report.done == 8

    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(grown_path), "--out", cube, "--executor", "serial"]
        + ["--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:  # until the extension's own record counts results
        if any(r["pid"] == proc.pid and r["done"] > 0 for r in _records(cube)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the extension ended before the kill"
    live = _status(capsys, cube, "--history").splitlines()[2]  # its lease tells a live run from a dead one
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    records = _records(cube)
    assert [r["ending"] for r in records] == ["finished", "running"]  # the kill left both intact
    killed = records[1]
    done_after_kill = int((Cube.open(cube).status() == DONE).sum())
    assert 0 < killed["done"] <= done_after_kill - 8  # written after the results it counts
    assert killed["run"] in live and " running (last heard at " in live, live
    assert killed["pid"] == proc.pid and killed["spec_hash"] != records[0]["spec_hash"]

    grown = spec_mod.load(grown_path)
    total = len(list(grown.tasks()))
    resumed = run(Cube.create_or_open(cube, grown), SerialExecutor(), progress=False)
    assert resumed.done == total - done_after_kill

    records = _records(cube)
    assert len(records) == 3 and records[1] == killed  # the resume did not touch the killed run's record
    text = _status(capsys, cube, "--history")
    lines = [line for line in text.splitlines() if line.startswith("    ")]
    assert len(lines) == 3, text
    assert " finished " in lines[0] and "done 8, failed 0" in lines[0]
    assert "killed or failed without recording its end (last heard at" in lines[1]
    assert f"done {killed['done']}," in lines[1]
    assert " finished " in lines[2] and f"done {total - done_after_kill}," in lines[2]
    assert "totals: 3 run(s)" in text and "serial" in text
    assert "runs: 3 (last started" in _status(capsys, cube)


def _failing_cell(job):
    """Every task at the second alpha fails: one error for plm, another for hebb (two of each)."""
    _, _, alpha, rule, _ = job.task.index
    if alpha == 1:
        raise (ValueError("boom: the same error everywhere") if rule == 1 else RuntimeError("other"))
    return run_cell(job)


class Broken(SerialExecutor):
    """Serial executor whose fan-out dies after k cells with an error that is not amsweep's."""

    def __init__(self, k: int) -> None:
        self.k = k

    def map_unordered(self, fn, jobs, total=None):
        for i, item in enumerate(super().map_unordered(fn, jobs, total)):
            if i == self.k:
                raise RuntimeError("the executor fell over")
            yield item


class Described(SerialExecutor):
    """The executor side of the ``describe()`` interface (issue 23), as a serial executor answers it."""

    def describe(self):
        return {"executor": "serial", "address": None, "nodes": 1, "cpus": 1, "memory_bytes": 2**30}


def test_endings_grouped_errors_json_and_a_legacy_record(tmp_path, capsys, small_raw):
    small_raw["noise"] = [0.0]
    sweep = spec_mod.from_dict(small_raw)  # 8 tasks: random N 48 x alpha 2 x rule 2 x seed 2
    cube = str(tmp_path / "e.zarr")
    legacy = {"done": 5, "seconds": 2.0, "executor": "ray", "workers": 2, "started": "2025-01-01T00:00:00+0000"}
    assert run(Cube.create_or_open(cube, sweep), StopAfter(2), progress=False).interrupted
    Path(cube, "_amsweep", "run.json").write_text(json.dumps(legacy))  # as an amsweep before the history left it
    with pytest.raises(RuntimeError, match="fell over"):
        run(Cube.create_or_open(cube, sweep), Broken(1), progress=False)
    report = run(Cube.create_or_open(cube, sweep), Described(), progress=False, cell=_failing_cell)
    assert report.failed == 4 and history.latest(objects_at(cube))["run"] == report.run

    data = json.loads(_status(capsys, cube, "--json"))
    endings = [r["state"] for r in data["runs"]]
    assert endings == ["unknown (legacy)", "interrupted", "failed: RuntimeError: the executor fell over", "finished"]
    assert data["runs"][0]["legacy"] and data["runs"][0]["done"] == 5
    assert [r["done"] for r in data["runs"][1:]] == [2, 1, 1]
    assert data["runs"][3]["failed"] == 4 and data["runs"][3]["executor"] == "serial"
    assert data["runs"][3]["cluster"] == Described().describe()
    assert data["runs"][1]["cluster"] == SerialExecutor().describe()  # the executors' own describe()
    assert data["run_totals"]["runs"] == 4 and data["run_totals"]["done"] == 5 + 4
    assert data["counts"] == {"done": 4, "pending": 0, "failed": 4, "not_applicable": 0}
    groups = data["failures"]["groups"]
    assert [(g["error"], g["count"]) for g in groups] == [  # ties in task order: hebb comes first
        ("RuntimeError: other", 2),
        ("ValueError: boom: the same error everywhere", 2),
    ]
    assert data["failures"]["count"] == 4 and all(len(g["examples"]) == 2 for g in groups)

    listed = _status(capsys, cube, "--history").splitlines()[1:-1]
    assert len(listed) == 4 and "serial at local, 1 node(s)" in listed[3]
    for line, r in zip(listed, data["runs"]):  # one line per JSON run, saying what it says
        assert f"  {r['state']}  done {r['done']}, failed {r.get('failed', '?')}, not applicable" in line, line
    text = _status(capsys, cube)  # the text says what the JSON says
    assert "tasks: done 4, pending 0, failed 4, not applicable 0" in text
    assert f"failures (4, {len(groups)} distinct error(s)):" in text
    for g in groups:
        shown = [line for line in text.splitlines() if f"{g['count']} x {g['error']}" in line]
        assert len(shown) == 1, text
        for coords in g["examples"]:
            assert " ".join(f"{k}={v}" for k, v in coords.items()) in shown[0]
    full = _status(capsys, cube, "--errors")
    assert full.count("Traceback (most recent call last)") == 2, full  # each distinct error's text once
    assert history.latest(objects_at(cube))["ending"] == "finished"

    before, cube_id = _records(cube), Cube.open(cube).cube_id  # a restage and a repair keep the history
    small_raw["datasets"]["random"]["alpha"].insert(0, 0.01)
    run(Cube.create_or_open(cube, spec_mod.from_dict(small_raw)), SerialExecutor(), progress=False)
    assert Cube.open(cube).cube_id != cube_id, "the inserted alpha did not restage the cube"
    assert main(["check", cube, "--repair"]) == 0
    after = _records(cube)
    assert after[:3] == before and len(after) == 4 and after[3]["done"] == 8
    assert Path(cube, "_amsweep", "run.json").exists()
