"""Ctrl-C that lands inside a flush (a real ``amsweep run``, SIGINT sent by the driver to itself
on entering ``Cube._flush``) ends like any other Ctrl-C: the documented line, exit 130, no
traceback; the flushes run on the flusher thread (``amsweep.sweeps.flusher``), which a signal
cannot stop mid-write, so the interrupted flush finishes, the run record saved after it counts
exactly the results in the cube, and the resumed cube equals an uninterrupted run. Interrupting
every flush from the second on hits the final flush (the one handed over in ``run``'s
``finally``) whatever the timing, and its retry too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.check import check
from amsweep.storage import history
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from tests.conftest import assert_same_cube
from tests.test_fencing import SPEC

ROOT = Path(__file__).resolve().parents[1]

# `amsweep run` that sends itself SIGINT on entering its INTERRUPT_AT-th flush (and, with
# INTERRUPT_ONWARDS=1, every later one), before any of that flush's writes.
INTERRUPTER = r"""
import os, signal, sys
from amsweep.sweeps import cli
from amsweep.storage import cube
signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the shell ignores SIGINT
real, calls = cube.Cube._flush, []
at, onwards = int(os.environ["INTERRUPT_AT"]), os.environ.get("INTERRUPT_ONWARDS") == "1"
def interrupted(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == at or (onwards and len(calls) > at):
        os.kill(os.getpid(), signal.SIGINT)
    return real(self, *args, **kwargs)
cube.Cube._flush = interrupted
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("onwards", [False, True], ids=["second-flush", "every-flush-from-the-second"])
def test_ctrl_c_inside_a_flush_prints_one_line_and_loses_nothing(tmp_path, onwards):
    spec = tmp_path / "fence.toml"
    spec.write_text(SPEC)
    url = str(tmp_path / "cube.zarr")
    args = ["run", str(spec), "--out", url, "--executor", "serial", "--quiet"]
    env = {**os.environ, "INTERRUPT_AT": "2", "INTERRUPT_ONWARDS": "1" if onwards else "0"}
    first = subprocess.run(
        [sys.executable, "-c", INTERRUPTER, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    text = first.stdout + first.stderr
    assert first.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "interrupted: finished results are saved; run the same command again to resume" in first.stdout, text
    sweep = spec_mod.load(spec)
    status = Cube.open(url).status()
    record = history.latest(Cube.open(url).objects)
    assert record is not None and record["ending"] == "interrupted", record
    assert 0 < record["done"] == (status == DONE).sum(), "the run record does not count the results in the cube"
    assert check(Cube.open(url)).ok

    resume = subprocess.run(
        [sys.executable, "-m", "amsweep.sweeps.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr
    reference = str(tmp_path / "reference.zarr")
    with Cube.create_or_open(reference, sweep) as cube:
        run(cube, SerialExecutor(), progress=False)
    assert (Cube.open(url).status() == DONE).all()
    assert_same_cube(url, reference)
