"""Integrity attacks (issue 21, items 4-8): lost status, lost chunks under a query, a lost or damaged
root document, a damaged coordinate, a kill during a renaming extension followed by the old spec,
``--csv`` into a folder, temporaries of killed writes. Each is done to a real cube on disk; each
must end in a clear finding, a repair that re-checks clean, or a one-line refusal.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import CubeError, QueryError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage import query, restage
from amsweep.storage.check import check, repair
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, PENDING
from tests import cube_damage
from amsweep.sweeps.cli import main
from tests.conftest import assert_cube_has, assert_same_cube, cube_values
from tests.test_cube_crash import killed_at_write, serial, written_keys

CLI = [sys.executable, "-m", "amsweep.sweeps.cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


def cli_here(*args: str) -> subprocess.CompletedProcess:
    """:func:`cli` in this process: the same ``main``, its exit status and output, without a Python start."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def one_line_error(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    for w in words:
        assert w in out.stderr, out.stderr


@pytest.fixture
def cubes(tmp_path, small_sweep):
    """(damaged copy, reference) of one finished small cube."""
    reference = str(tmp_path / "ref.zarr")
    serial(reference, small_sweep)
    path = str(tmp_path / "dmg.zarr")
    subprocess.run(["cp", "-r", reference, path], check=True)
    return path, reference


def test_a_lost_status_shard_is_found_rebuilt_from_data_and_nothing_is_recomputed(cubes, small_sweep):
    path, reference = cubes
    assert cube_damage.delete_status(path)
    report = check(Cube.open(path))
    assert not report.ok
    assert any("status shard status/" in p and "is missing" in p for p in report.problems), report.problems
    assert len(report.rebuild) == 8
    out = cli("query", path, "--metric", "m_train")  # was an empty table, exit 0
    one_line_error(out, "status of", "is lost", "check --repair")
    repaired = cli("check", path, "--repair")
    assert repaired.returncode == 0 and "re-checked: ok" in repaired.stdout, repaired.stdout + repaired.stderr
    assert (Cube.open(path).status() == DONE).all()
    assert run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False).done == 0
    assert_same_cube(path, reference)


def test_a_missing_value_is_an_error_under_mean_or_an_explicit_count(cubes):
    path, _ = cubes
    task = (0, 0, 1, 1, 0)  # plm, alpha 0.3, seed 0
    full = cli("query", path, "--metric", "success_train", "--mean")
    assert full.returncode == 0 and " n" in full.stdout.splitlines()[0], full.stdout + full.stderr
    cube_damage.blank_value(path, "success_train", task)  # declared finite for every done task
    out = cli("query", path, "--metric", "success_train", "--mean")  # was a mean over the other seed, exit 0
    one_line_error(out, "success_train of 1 done task(s)", "missing or damaged", "'seed': 0", "--allow-missing")
    with pytest.raises(QueryError, match="missing or damaged"):
        query.to_frame(query.open_cube(path), "success_train")
    allowed = cli("query", path, "--metric", "success_train", "--mean", "--allow-missing", "--csv", f"{path}.csv")
    assert allowed.returncode == 0 and "missing" in allowed.stderr, allowed.stderr
    import pandas as pd

    table = pd.read_csv(f"{path}.csv")
    hit = table[(table["rule"] == "plm") & np.isclose(table["alpha"], 0.3)]
    assert (hit["n"] == 1).all() and (hit["missing"] == 1).all(), table
    rest = table.drop(hit.index)
    assert (rest["n"] == 2).all() and (rest["missing"] == 0).all(), table
    frame = query.to_frame(query.open_cube(path), "success_train", allow_missing=True)
    lost = frame[frame["missing"] == 1]
    assert len(lost) == 2 and lost["success_train"].isna().all() and set(lost["seed"]) == {0}  # two noise rows


def test_a_deleted_data_shard_is_an_error_not_an_empty_table(cubes):
    path, _ = cubes
    cube_damage.delete_shard(path, "m_train", (0, 0, 0, 0, 0))
    one_line_error(cli("query", path, "--metric", "m_train"), "m_train of 8 done task(s)", "missing or damaged")
    one_line_error(cli("query", path, "--metric", "m_train", "--where", "rule=hebb"), "m_train of 4 done task(s)")
    assert "m_test" in cli("query", path, "--metric", "m_test").stdout  # other variables still answer


@pytest.mark.parametrize("damage", ["deleted", "damaged"])
def test_a_lost_or_damaged_root_document_is_named_restored_and_the_run_resumes(cubes, small_sweep, damage):
    path, reference = cubes
    for task in ((0, 0, 1, 0, 1), (0, 0, 0, 1, 0)):  # two tasks still to run (and no data to rebuild them)
        cube_damage.blank_value(path, "retrieval_seconds", task)
    with Cube.open(path, mode="r+") as cube:
        cube.reset([(0, 0, 1, 0, 1), (0, 0, 0, 1, 0)])
    root = Path(path, "zarr.json")
    original = root.read_bytes()
    if damage == "deleted":
        root.unlink()
    else:
        root.write_bytes(original[: len(original) // 2])
    word = "missing" if damage == "deleted" else "damaged"
    checked = cli("check", path)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"root document zarr.json {word}; `amsweep check --repair` restores it" in checked.stdout
    spec = Path(path).parent / "small.toml"
    spec.write_text(_toml(small_sweep))
    one_line_error(cli("run", str(spec), "--out", path, "--executor", "serial"), "check --repair")
    repaired = cli("check", path, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "restored the root document" in repaired.stdout and "re-checked: ok" in repaired.stdout
    assert root.read_bytes() == original
    assert Cube.open(path).attrs == Cube.open(reference).attrs  # cube id, spec, provenance: all of it
    assert run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False).done == 2
    assert check(Cube.open(path)).ok
    assert_same_cube(path, reference)


def _toml(sweep: spec_mod.Sweep) -> str:
    """The small spec as TOML (the CLI reads a file)."""
    return (
        'name = "tiny"\nroot_seed = 11\nseeds = 2\nnoise = [0.0, 0.15]\nP_test = 6\n'
        "[retrieval]\ntrain_starts = 8\ntest_starts = 6\nrandom_starts = 3\n"
        "[datasets.random]\nN = [48]\nalpha = [0.05, 0.3]\n"
        "[rules.hebb]\n[rules.plm]\nepochs = 30\nlr = 5.0\n"
    )


def test_a_damaged_coordinate_chunk_is_rewritten_from_the_spec(cubes):
    path, _ = cubes
    chunk = Path(path, "alpha", "c", "0")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    report = check(Cube.open(path))
    assert any("coordinate 'alpha'" in p for p in report.problems), report.problems
    repaired = cli("check", path, "--repair")
    assert repaired.returncode == 0 and "rewrote coordinate(s) alpha" in repaired.stdout, repaired.stdout
    assert check(Cube.open(path)).ok
    import zarr

    assert np.allclose(zarr.open_array(path, path="alpha", mode="r")[...], [0.05, 0.3])


def test_a_kill_during_a_renaming_extension_then_the_old_spec_is_repaired_fully(tmp_path, small_raw):
    """Killed before the root write, half-way through the array documents, and early."""
    rename_kill(tmp_path, small_raw, every=False)


@pytest.mark.slow
def test_a_kill_at_many_writes_of_a_renaming_extension_then_the_old_spec_is_repaired_fully(tmp_path, small_raw):
    rename_kill(tmp_path, small_raw, every=True)


def rename_kill(tmp_path, small_raw, every: bool) -> None:
    small = spec_mod.from_dict(small_raw)
    small_raw["rules"]["plm"]["lr"] = [5.0, 2.5]  # 'plm' becomes 'plm[lr=5.0]', and 'plm[lr=2.5]' is added
    bigger = spec_mod.from_dict(small_raw)
    base = str(tmp_path / "base.zarr")
    serial(base, small)
    reference = str(tmp_path / "ref.zarr")  # grown without a kill ('plm[lr=5.0]' keeps the streams of 'plm')
    subprocess.run(["cp", "-r", base, reference], check=True)
    serial(reference, bigger)

    def extend(path: str) -> None:
        Cube.create_or_open(path, bigger).release()

    copy = lambda dst: subprocess.run(["cp", "-r", base, dst], check=True)  # noqa: E731
    keys = written_keys(
        None, lambda: extend(str(tmp_path / "count.zarr")), setup=lambda: copy(str(tmp_path / "count.zarr"))
    )
    last = len(keys) - 1 - keys[::-1].index("zarr.json")  # the root write (0-based): kill just before it
    # 'plm[lr=2.5]' sorts before 'plm[lr=5.0]': the growth restages the cube, and once its READY marker
    # is written the extension is committed (the next open finishes it), so the old spec is refused
    ready = keys.index(restage.READY) if restage.READY in keys else last + 1
    # every fifth write (and each boundary) in the slow variant: ~70 kills of the ~330 writes of a
    # restaging growth cost CI a minute; every write cost five
    points = set(range(0, last + 1, 5)) if every else set()
    want = cube_values(reference)
    for k in sorted(points | {last, ready, ready - 1, last // 2, 3}):
        path = str(tmp_path / f"k{k}.zarr")
        copy(path)
        assert killed_at_write(k + 1, lambda: extend(path)) == -9
        if k > ready:
            with pytest.raises(CubeError, match="written by another spec"):
                serial(path, small)
            serial(path, bigger)
            assert check(Cube.open(path)).ok
            assert_cube_has(path, want)
            continue
        serial(path, small)  # the old spec again: its cube, untouched by the half growth
        assert Cube.open(path).sweep.spec_hash == small.spec_hash
        # the slow variant runs the same `check --repair` in this process: a CLI process a kill (~2 s of
        # starting Python) was 70% of its time; the fast variant runs it as a user does, at each boundary
        repaired = cli_here("check", path, "--repair") if every else cli("check", path, "--repair")
        assert repaired.returncode == 0 and ": ok" in repaired.stdout, (k, keys[k], repaired.stdout, repaired.stderr)
        assert check(Cube.open(path)).ok
        serial(path, bigger)
        assert check(Cube.open(path)).ok
        assert_cube_has(path, want)


def test_csv_into_a_folder_or_a_missing_folder_is_one_line(cubes, tmp_path):
    path, _ = cubes
    folder = tmp_path / "out"
    folder.mkdir()
    one_line_error(
        cli("query", path, "--metric", "m_train", "--csv", str(folder)), "cannot write there (it is a folder"
    )
    one_line_error(
        cli("query", path, "--metric", "m_train", "--csv", str(tmp_path / "nope" / "t.csv")),
        "is not an existing folder",
    )
    assert not (tmp_path / "nope").exists()


def test_temporaries_of_killed_writes_are_removed_by_repair(tmp_path, small_sweep):
    from amsweep.storage import temporaries

    path = str(tmp_path / "t.zarr")
    keys = written_keys(None, lambda: serial(str(tmp_path / "count.zarr"), small_sweep))
    k = next(i for i, key in enumerate(keys, start=1) if "/c/" in key and i > len(keys) // 2)
    assert killed_at_write(k, lambda: serial(path, small_sweep), torn=True) == -9
    left = temporaries.find(Cube.open(path).objects)
    assert left, "the torn write left no temporary"
    checked = cli("check", path)
    assert checked.returncode == 0 and "temporary file(s)" in checked.stdout, checked.stdout
    repaired = cli("check", path, "--repair")
    assert repaired.returncode == 0 and f"removed {len(left)} temporary file(s)" in repaired.stdout, repaired.stdout
    assert not temporaries.find(Cube.open(path).objects)
    assert not any(p.exists() for p in left)
    serial(path, small_sweep)
    assert (Cube.open(path).status() != PENDING).all()
    again = str(tmp_path / "again.zarr")  # the next run removes them too
    assert killed_at_write(k, lambda: serial(again, small_sweep), torn=True) == -9
    assert temporaries.find(Cube.open(again).objects)
    serial(again, small_sweep)
    assert not temporaries.find(Cube.open(again).objects)


def test_a_lost_status_shard_gets_failed_tasks_back_from_their_error_records(tmp_path, small_sweep, monkeypatch):
    import amsweep.pipeline.rules.plm as plm

    def broken(X, q, params, rng):
        raise FloatingPointError("injected failure")

    path = str(tmp_path / "f.zarr")
    monkeypatch.setattr(plm, "train", broken)
    assert run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False).failed == 4
    before = Cube.open(path).status().copy()
    assert cube_damage.delete_status(path)
    report = check(Cube.open(path))
    assert not report.ok and any("status shard" in p for p in report.problems), report.problems
    with Cube.open(path, mode="r+") as cube:
        repair(cube, report)
    np.testing.assert_array_equal(Cube.open(path).status(), before)  # done from data, failed from records
    assert check(Cube.open(path)).ok


def test_an_unreadable_shard_object_is_named_removed_and_recomputed(cubes, small_sweep):
    path, reference = cubes
    file = cube_damage.chunk_span(path, "m_test", (0, 0, 0, 0, 0))[0]
    file.write_bytes(b"not a shard of this cube" * 40)
    report = check(Cube.open(path))
    assert any(f"shard {file.relative_to(path)} is unreadable" in p for p in report.problems), report.problems
    assert len(report.damaged) == 8
    with Cube.open(path, mode="r+") as cube:
        repair(cube, report)
    assert not file.exists()  # the next run writes it afresh, not on top of foreign bytes
    assert check(Cube.open(path)).ok  # every task of it is pending now
    assert run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False).done == 8
    assert_same_cube(path, reference)


def test_a_task_repair_set_back_to_pending_is_not_taken_for_one_that_lost_its_status(cubes):
    """Its other chunks are intact (sentinel included), but it is not complete: it waits for the run."""
    path, _ = cubes
    cube_damage.flip_byte(path, "m_test", (0, 0, 1, 1, 0))
    with Cube.open(path, mode="r+") as cube:
        report = check(cube)
        repair(cube, report)
    damaged = len(report.damaged)  # every task of the flipped inner chunk (format 3: a seed row or more)
    assert damaged >= 1 and (0, 0, 1, 1, 0) in report.damaged
    assert check(Cube.open(path)).ok
    frame = query.to_frame(query.open_cube(path), "m_train")
    assert len(frame) == (8 - damaged) * 2  # the tasks still done, two noise levels each; no error


def test_on_s3_a_lost_root_and_a_lost_status_shard_are_restored(small_sweep):
    from benchmarks._moto import moto_server

    from amsweep.pipeline.errors import CubeError
    from amsweep.storage.check import restore_root
    from amsweep.storage.objects import objects_at

    with moto_server(buckets=("cubes",)):
        url = "s3://cubes/integrity.zarr"
        run(Cube.create_or_open(url, small_sweep), SerialExecutor(), progress=False)
        objects = objects_at(url)
        original = objects.get("zarr.json")
        objects.delete("zarr.json")
        with pytest.raises(CubeError, match="root document zarr.json missing; `amsweep check --repair` restores it"):
            Cube.open(url)
        assert restore_root(url) is not None and objects.get("zarr.json") == original
        status = [k for k in objects.list("status") if "/c/" in k]
        assert status
        for key in status:
            objects.delete(key)
        with Cube.open(url, mode="r+") as cube:
            report = check(cube)
            assert len(report.rebuild) == 8, report.problems
            repair(cube, report)
        assert (Cube.open(url).status() == DONE).all() and check(Cube.open(url)).ok
