"""Crash safety of format 2: kill -9 at every write of a creation, a flush and an extension; two
drivers at once; flipped bytes, lost shards and forced status found by ``check`` and repaired.

Kill points are chosen by instrumenting the store in a forked driver (the k-th object write
SIGKILLs the process, either before the write or after a torn temporary was left beside it), not
by sleeping, so the chosen writes are hit on every run: every phase and kind of write (see
:func:`kill_points`), and every single write with ``AMSWEEP_EVERY_KILL=1``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.check import check, repair
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, NOT_APPLICABLE, PENDING
from amsweep.storage.objects import LocalObjects
from tests import cube_damage
from tests.conftest import assert_cube_has, assert_same_cube, cube_values


def killed_at_write(
    k: int | None, fn: Callable[[], object], setup: Callable[[], object] | None = None, torn: bool = False
) -> int:
    """Run ``fn`` in a forked child whose k-th object write (put or delete) SIGKILLs it.

    Returns -9 when killed, else the child's exit code; with ``k=None`` the number of writes
    ``fn`` made. ``torn``: the killed write first leaves a half-written temporary file.
    """
    return len(written_keys(k, fn, setup, torn)) if k is None else written_keys(k, fn, setup, torn)


def written_keys(
    k: int | None, fn: Callable[[], object], setup: Callable[[], object] | None = None, torn: bool = False
):
    """The keys ``fn`` writes, in order (``k=None``), or the forked driver's fate at write k."""
    if setup:
        setup()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the driver
        os.close(r)
        keys, real_put, real_delete = [], LocalObjects.put, LocalObjects.delete

        def hit(self: LocalObjects, key: str, data: bytes | None) -> None:
            keys.append(key)
            if len(keys) == k:
                if torn and data is not None:
                    self._temporary(self._path(key), data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)

        LocalObjects.put = lambda self, key, data: (hit(self, key, data), real_put(self, key, data))[1]
        LocalObjects.delete = lambda self, key: (hit(self, key, None), real_delete(self, key))[1]
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 3
        os.write(w, json.dumps(keys).encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        written = f.read()
    _, state = os.waitpid(pid, 0)
    if os.WIFSIGNALED(state):
        return -os.WTERMSIG(state)
    assert os.WEXITSTATUS(state) == 0, f"the driver failed before write {k}"
    return json.loads(written) if k is None else 0


EVERY_KILL = os.environ.get("AMSWEEP_EVERY_KILL") == "1"


def write_kind(key: str) -> str:
    """What a write does, whatever variable it is for: ``m_train/c/0/0`` and ``n_clusters/c/0/0`` are the
    same step (a data shard of a flush, its status not yet committed), as are the array documents and
    coordinate chunks of a template (its root not yet written); the status shards (the commit), the root
    and the run records are each a kind of their own."""
    head, _, rest = key.partition("/")
    if not rest or head in ("status", "_amsweep"):
        return key if head != "_amsweep" or not rest.startswith("stage/") else "_amsweep/stage/" + write_kind(rest[6:])
    return "*"  # an array document or a chunk of a variable or a coordinate


def kill_points(keys: list[str], stride: int = 3) -> list[int]:
    """The 1-based writes a kill-at-every-write test kills at: the first and the last of every run of
        writes of one kind (:func:`write_kind`), and every ``stride``-th write inside a run (odd, so a run
    alternating documents and chunks has both hit); every write
        with ``AMSWEEP_EVERY_KILL=1``. Measured: a creation makes 119 writes (179 kills with the torn
        ones), 62 of them data shards of a flush differing only in the variable; killing at all of them
        cost CI ~50 s (loaded) and found nothing the sampled runs miss."""
    if EVERY_KILL:
        return list(range(1, len(keys) + 1))
    kinds = [write_kind(key) for key in keys]
    last = len(kinds) - 1
    return [
        i + 1
        for i, kind in enumerate(kinds)
        if i in (0, last) or kinds[i - 1] != kind or kinds[i + 1] != kind or i % stride == 0
    ]


def serial(path: str, sweep: spec_mod.Sweep, flush_every: int = 4) -> None:
    run(
        Cube.create_or_open(path, sweep),
        SerialExecutor(),
        progress=False,
        flush_every=flush_every,
        min_flush_seconds=0.0,
    )


@pytest.mark.slow
def test_kill_at_every_write_of_a_creation_and_of_flushes_resumes_to_the_straight_cube(tmp_path, small_sweep):
    reference = str(tmp_path / "ref.zarr")
    serial(reference, small_sweep)
    want = cube_values(reference)
    keys = written_keys(None, lambda: serial(str(tmp_path / "count.zarr"), small_sweep))
    assert len(keys) > 40  # creation, two flushes of 4 tasks, run records
    for k in kill_points(keys):
        key = keys[k - 1]
        for torn in (False, True) if "/c/" in key and "zarr.json" not in keys[k:] else (False,):
            path = str(tmp_path / f"k{k}{'t' if torn else ''}.zarr")
            assert killed_at_write(k, lambda: serial(path, small_sweep), torn=torn) == -9, k
            serial(path, small_sweep)
            assert check(Cube.open(path)).ok, k
            assert_cube_has(path, want)


@pytest.mark.slow
def test_kill_at_every_write_of_an_extension_resumes_to_the_grown_cube(tmp_path, small_raw):
    small = spec_mod.from_dict(small_raw)
    small_raw["seeds"] = 3
    small_raw["datasets"]["random"]["alpha"] = [0.05, 0.3, 0.5]
    bigger = spec_mod.from_dict(small_raw)
    reference = str(tmp_path / "ref.zarr")
    serial(reference, bigger)
    base = str(tmp_path / "base.zarr")
    serial(base, small)

    def extend(path: str) -> None:
        Cube.create_or_open(path, bigger).release()

    copy = lambda dst: subprocess.run(["cp", "-r", base, dst], check=True)  # noqa: E731
    keys = written_keys(
        None, lambda: extend(str(tmp_path / "count.zarr")), setup=lambda: copy(str(tmp_path / "count.zarr"))
    )
    assert len(keys) > 20
    want = cube_values(reference)
    for k in kill_points(keys):
        path = str(tmp_path / f"k{k}.zarr")
        copy(path)
        assert killed_at_write(k, lambda: extend(path)) == -9
        opened = Cube.open(path)  # the old cube or the grown one, never a refused one
        assert opened.sweep.spec_hash in (small.spec_hash, bigger.spec_hash)
        assert (opened.status() == DONE).sum() == 8
        serial(path, bigger)
        assert check(Cube.open(path)).ok
        assert_cube_has(path, want)


def test_an_empty_folder_or_an_interrupted_template_is_rebuilt(tmp_path, small_sweep):
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    serial(str(empty), small_sweep)
    assert (Cube.open(str(empty)).status() == DONE).all()


def test_two_drivers_at_once_exactly_one_runs_and_the_other_changes_nothing(tmp_path):
    spec = tmp_path / "two.toml"
    spec.write_text(Path(__file__).parent.joinpath("data", "two_drivers.toml").read_text())
    out = tmp_path / "two.zarr"
    cmd = [
        sys.executable,
        "-m",
        "amsweep.sweeps.cli",
        "run",
        str(spec),
        "--out",
        str(out),
        "--executor",
        "serial",
        "--quiet",
    ]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outs = [p.communicate(timeout=300)[0] for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 2], outs
    loser = outs[[first.returncode, second.returncode].index(2)]
    assert "in use by another driver" in loser and "pid" in loser and "Traceback" not in loser, loser
    assert "task(s) to run" not in loser  # refused before reading or writing anything
    cube = Cube.open(str(out))
    assert (cube.status() == DONE).all() and check(cube).ok


def test_flipped_byte_lost_shard_and_forced_status_are_found_and_repaired(tmp_path, small_sweep):
    reference = str(tmp_path / "ref.zarr")
    serial(reference, small_sweep)
    path = str(tmp_path / "dmg.zarr")
    serial(path, small_sweep)
    cube_damage.flip_byte(path, "m_test", (0, 0, 1, 1, 0))
    cube_damage.force_status(path, (0, 0, 0, 1, 1), NOT_APPLICABLE)
    report = check(Cube.open(path))
    # Format 3: the flipped byte damages its whole inner chunk, here the tiny cube's one chunk.
    assert sorted(report.damaged) == sorted(np.ndindex(*small_sweep.shape)), report.problems
    assert any("m_test fails its checksum" in p for p in report.problems)
    assert any("not applicable, but the spec says applicable" in p for p in report.problems)
    with Cube.open(path, mode="r+") as cube:
        assert repair(cube, report) == 8
    assert Cube.open(path).status()[0, 0, 1, 1, 0] == PENDING
    assert run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False).done == 8
    assert check(Cube.open(path)).ok
    assert_same_cube(path, reference)
    cube_damage.delete_shard(path, "random_best_train", (0, 0, 0, 0, 0))  # every task of the shard
    report = check(Cube.open(path))
    assert len(report.damaged) == 8 and all("random_best_train is missing" in p for p in report.problems)
    with Cube.open(path, mode="r+") as cube:
        repair(cube, report)
    serial(path, small_sweep)
    assert check(Cube.open(path)).ok
    assert_same_cube(path, reference)


def zarr_reads(path: str, name: str) -> bool:
    import zarr

    return zarr.open_array(path, path=name, mode="r").shape is not None


def test_query_on_a_damaged_chunk_is_one_clear_error(tmp_path, small_sweep):
    path = str(tmp_path / "q.zarr")
    serial(path, small_sweep)
    cube_damage.flip_byte(path, "m_train", (0, 0, 1, 0, 1))
    out = subprocess.run(
        [sys.executable, "-m", "amsweep.sweeps.cli", "query", path, "--metric", "m_train"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    # the damaged inner chunk (format 3: a seed row or more) makes every task in it lost
    assert "done task(s)" in out.stderr and "'seed': 0" in out.stderr and "check --repair" in out.stderr
    Path(path, "m_test", "zarr.json").write_text("{ damaged")  # zarr's own per-array document:
    report = check(Cube.open(path))  # amsweep reads the root document, so queries still work
    assert any("m_test/zarr.json is missing or damaged" in p for p in report.problems)
    assert (
        "m_test"
        in subprocess.run(
            [sys.executable, "-m", "amsweep.sweeps.cli", "query", path, "--metric", "m_test"],
            capture_output=True,
            text=True,
        ).stdout
    )
    with Cube.open(path, mode="r+") as cube:
        repair(cube, report)
    assert zarr_reads(path, "m_test")
    Path(path, "zarr.json").write_text("{ damaged")
    out = subprocess.run([sys.executable, "-m", "amsweep.sweeps.cli", "status", path], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr  # a backup restores it:
    assert "root document zarr.json damaged; `amsweep check --repair` restores it" in out.stderr


def test_check_repair_refuses_while_a_driver_holds_the_cube_and_plain_check_reads(tmp_path):
    from tests.conftest import wait_for_first_flush

    spec = tmp_path / "busy.toml"
    spec.write_text(Path(__file__).parent.joinpath("data", "two_drivers.toml").read_text())
    out = str(tmp_path / "busy.zarr")
    cli = [sys.executable, "-m", "amsweep.sweeps.cli"]
    driver = subprocess.Popen(
        [*cli, "run", str(spec), "--out", out, "--executor", "serial", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_first_flush(driver, out)
        assert driver.poll() is None, "the sweep ended before the checks"
        repair_run = subprocess.run([*cli, "check", out, "--repair"], capture_output=True, text=True)
        reading = subprocess.run([*cli, "check", out], capture_output=True, text=True)
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    assert repair_run.returncode == 2 and "in use by another driver" in repair_run.stderr, repair_run.stderr
    assert f"pid {driver.pid}" in repair_run.stderr
    assert reading.returncode == 0 and ": ok" in reading.stdout, reading.stdout + reading.stderr
