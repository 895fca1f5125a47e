"""attack23b: adversarial review of issue 23's run history and Python API. Each test here shows a
way amsweep misled, crashed or accepted what it should refuse at the time of the review; each was
marked ``xfail(strict=True)`` until fixed (fix23b). Tiny specs, serial executor, no Ray: seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import AmsweepError
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main
from tests.test_plugin_provenance import half_done  # noqa: F401 (the fixture, by name)

SPEC = """
name = "tiny"
root_seed = 11
seeds = 2
noise = [0.0]
P_test = 6

[retrieval]
train_starts = 8
test_starts = 6
random_starts = 3

[datasets.random]
N = [48]
alpha = [0.05, 0.3]

[rules.hebb]
"""


def _spec(tmp_path: Path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return str(path)


def _pending_cube(tmp_path: Path) -> str:
    """A cube created for the tiny sweep with every task still pending (no run needed)."""
    out = str(tmp_path / "c.zarr")
    cube = Cube.create_or_open(out, spec_mod.load(_spec(tmp_path)))
    cube.release()
    return out


def _foreign(out: str, name: str, record: object) -> None:
    runs = Path(out, "_amsweep", "runs")
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{name}.json").write_text(record if isinstance(record, str) else json.dumps(record))


def _status(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["status", *argv]) == 0
    return capsys.readouterr().out


# ---- Python API: what the command line refuses ----------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{"executor": "dask"}, {"executor": "serial", "workers": 2}],
    ids=["unknown-executor", "option-the-executor-does-not-take"],
)
def test_api_dry_run_refuses_an_executor_or_option_the_cli_refuses(tmp_path, capsys, options):
    """`amsweep run --dry-run --executor serial --workers 2` is refused (argparse / executor_options);
    the same call through amsweep.run(dry_run=True) returned a plan, as if the real run would go."""
    import amsweep

    spec, out = _spec(tmp_path), tmp_path / "c.zarr"
    argv = ["run", spec, "--out", str(out), "--dry-run", "--executor", options["executor"]]
    argv += ["--workers", "2"] if "workers" in options else []
    assert main(argv) == 2  # the CLI refuses it
    with pytest.raises(AmsweepError):
        amsweep.run(spec, out=str(out), dry_run=True, **options)
    assert not out.exists()


@pytest.mark.parametrize("option", [{"workers": 0}, {"workers": -2}, {"workers": "4"}, {"cells_per_task": 0}])
def test_api_refuses_a_non_positive_worker_or_batch_count_before_starting_ray(tmp_path, monkeypatch, option):
    """The CLI refuses `--workers 0` / `--cells-per-task 0` (positive_int) before anything starts;
    amsweep.run handed them to the Ray executor (workers=0 silently means "all CPUs"). The Ray
    executor is replaced by one that only records that it was started, so no Ray runs here."""
    import amsweep
    from amsweep.pipeline import executors
    from amsweep.pipeline.ray_executor import RayExecutor

    class Started(RuntimeError):
        pass

    class NoRay(RayExecutor):
        def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
            raise Started(f"the executor was started with {kwargs}")

    monkeypatch.setitem(executors.EXECUTORS, "ray", NoRay)
    out = tmp_path / "c.zarr"
    name = next(iter(option))
    with pytest.raises(AmsweepError, match=name.replace("_", ".")):
        amsweep.run(_spec(tmp_path), out=str(out), **option)
    assert not out.exists()


# ---- dry run: says a run would go where the run refuses --------------------------------------------
def test_dry_run_of_a_resume_with_edited_plugin_code_says_the_run_would_be_refused(half_done, capsys):  # noqa: F811
    """The run refuses a resume whose plug-in code changed (exit 2, one line); `run --dry-run` of the
    same command said "dry run: ... matches the cube ... 1 task(s) to run" and exited 0."""
    from tests.test_plugin_provenance import TOY, files, run, write

    folder, spec, out = half_done
    write(folder, "rules", "toy", TOY.replace("LIMIT = 3.0", "LIMIT = 5.0"))
    before = files(out)
    assert run(spec, out) == 2  # the real run refuses
    capsys.readouterr()
    assert run(spec, out, "--dry-run") == 2, capsys.readouterr().out  # its dry run should say so
    assert files(out) == before


# ---- status on damaged or foreign run records --------------------------------------------------------
def test_status_history_survives_a_foreign_record_with_odd_field_types(tmp_path, capsys):
    """load_runs keeps any JSON object as a record; render_history then calls .get on `cluster` and
    len() on `plugins`: a record with "cluster": "here" crashed `status --history` with a traceback."""
    out = _pending_cube(tmp_path)
    _foreign(out, "20261207T000000.000000Z-0000beef", {"run": "x", "cluster": "here", "plugins": 5, "done": 1})
    assert _status(capsys, out, "--history").startswith(f"cube {out}: 1 run(s)")


def test_status_survives_a_record_whose_rate_is_zero(tmp_path, capsys):
    """A record's "seconds": 1e309 is valid JSON that Python reads as inf: the rate done/seconds is 0
    and the ETA todo/rate raised ZeroDivisionError in plain `amsweep status` (tasks pending)."""
    out = _pending_cube(tmp_path)
    _foreign(out, "20261207T000000.000000Z-0000beef", '{"run": "x", "done": 3, "seconds": 1e309}')
    text = _status(capsys, out)
    assert "pending 4" in text


def test_status_json_is_strict_json_whatever_a_record_holds(tmp_path, capsys):
    """json.dumps writes inf as the bare word Infinity; jq and every strict parser reject the output."""
    out = _pending_cube(tmp_path)
    _foreign(out, "20261207T000000.000000Z-0000beef", '{"run": "x", "done": 0, "seconds": 1e309}')
    text = _status(capsys, out, "--json")

    def refuse(word: str) -> None:
        raise ValueError(f"not JSON: {word}")

    json.loads(text, parse_constant=refuse)


def test_a_record_that_is_no_run_of_this_cube_is_not_taken_for_its_last_run(tmp_path, capsys):
    """Anything under _amsweep/runs/ is a run, ordered by its key: a JSON object with none of the
    record's fields (a stray file, a record of another cube copied in) named after every real run
    became the run that `status` reports as the last one ("last started ?: unknown")."""
    out = str(tmp_path / "c.zarr")
    assert main(["run", _spec(tmp_path), "--out", out, "--executor", "serial", "--quiet"]) == 0
    _foreign(out, "zz-notes", {"comment": "kept here by hand"})
    text = _status(capsys, out)
    assert "last started ?" not in text and ": finished;" in text, text


def test_check_names_an_unreadable_run_record(tmp_path, capsys):
    """`status --history` lists an unreadable record as "unreadable record"; `amsweep check` (the
    command meant to find damage) said "ok" and named nothing."""
    out = _pending_cube(tmp_path)
    _foreign(out, "20261207T000000.000000Z-0000beef", "{truncated")
    capsys.readouterr()
    main(["check", out])
    said = capsys.readouterr()
    assert "20261207T000000.000000Z-0000beef" in said.out + said.err


# ---- the order of runs --------------------------------------------------------------------------------
def test_runs_are_listed_in_the_order_they_ran_when_a_drivers_clock_is_ahead(tmp_path, capsys, monkeypatch):
    """Run ids (and so the listing, "last started" and the throughput behind the ETA) are ordered by
    the start time on each driver's own clock. A first run on a machine whose clock is an hour fast,
    then an extension from a machine with the right time: `status` called the first run the last one
    and rated the ETA on it. The lease generation that each run takes over is a clock-free order."""
    import datetime as dt

    from amsweep.storage import history
    from amsweep.sweeps.runner import run as run_sweep

    fast = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    real_id = history.new_run_id
    monkeypatch.setattr(history, "new_run_id", lambda: fast.strftime("%Y%m%dT%H%M%S.%fZ") + "-0000fa57")
    out = str(tmp_path / "c.zarr")
    first = run_sweep(Cube.create_or_open(out, spec_mod.load(_spec(tmp_path))), progress=False)
    monkeypatch.setattr(history, "new_run_id", real_id)
    (tmp_path / "grown.toml").write_text(SPEC.replace("seeds = 2", "seeds = 3"))
    grown = spec_mod.load(tmp_path / "grown.toml")
    second = run_sweep(Cube.create_or_open(out, grown), progress=False)
    assert (first.done, second.done) == (4, 2)
    runs = history.load_runs(Cube.open(out).objects)
    assert [r["run"] for r in runs] == [first.run, second.run]
    assert "last run: 2 tasks" in _status(capsys, out)


def test_a_run_started_from_python_records_that_it_was_the_python_api(tmp_path):
    """The run record's ``command`` is ``sys.argv``: for amsweep.run in a notebook that is the
    kernel's launcher line (here pytest's), which says nothing of the run. It should name the call."""
    import amsweep
    from amsweep.storage import history

    out = str(tmp_path / "c.zarr")
    summary = amsweep.run(_spec(tmp_path), out=out, executor="serial")
    [record] = history.load_runs(Cube.open(out).objects)
    assert record["run"] == summary.run
    assert "amsweep.run" in record["command"], record["command"]


def test_dry_run_says_the_cube_is_in_use_when_a_live_driver_holds_it(tmp_path, capsys):
    """Another machine's driver holds the cube (a fresh heartbeat): the run is refused ("in use by
    another driver", exit 2) but its dry run said "2 task(s) to run of 6 ... nothing was created"
    and exited 0, as if the run would go. It should say the run would be refused, and by whom."""
    import time

    out = str(tmp_path / "c.zarr")
    assert main(["run", _spec(tmp_path), "--out", out, "--executor", "serial", "--quiet"]) == 0
    holder = {"holder": "node7:4242", "host": "node7", "machine": "m7", "pid": 4242, "token": "t" * 32}
    holder.update(heartbeat_epoch=time.time(), command="amsweep run other.toml", generation=3)
    Path(out, "_amsweep", "lease.json").write_text(json.dumps(holder))
    grown = tmp_path / "grown.toml"
    grown.write_text(SPEC.replace("seeds = 2", "seeds = 3"))
    argv = ["run", str(grown), "--out", out]
    assert main([*argv, "--executor", "serial", "--quiet"]) == 2  # the run is refused
    capsys.readouterr()
    code = main([*argv, "--dry-run"])
    said = capsys.readouterr()
    assert code == 2 or "node7" in said.out + said.err, said.out


def test_api_resume_after_a_plugin_edit_runs_the_code_whose_hash_it_records(half_done):  # noqa: F811
    """A notebook: run, find a plug-in bug, fix the file, amsweep.run again (allow_changed_plugins,
    as the refusal suggests) in the same kernel. The cube records the fixed file's hash, but the
    serial executor ran the module imported before the edit: the scale-4 cell failed again with the
    old code, under the new code's hash."""
    import amsweep
    from amsweep.pipeline import registry
    from tests.test_plugin_provenance import MODULE, TOY, write

    folder, spec, out = half_done  # the toy rule imported in this process; its scale-4 cell failed
    write(folder, "rules", "toy", TOY.replace("LIMIT = 3.0", "LIMIT = 5.0"))  # the fix
    summary = amsweep.run(str(spec), out=str(out), executor="serial", allow_changed_plugins=True)
    cube = Cube.open(str(out))
    assert cube.attrs["plugins"][MODULE] == registry.code_hashes([("rules", "toy")])[MODULE]  # the fix's hash
    assert summary.failed == 0 and (cube.status() == 1).all(), summary.errors  # ... and the fix ran


def test_a_second_run_in_the_same_process_is_refused_while_a_first_one_holds_the_cube(tmp_path):
    """The lease is shared within a process ("one process may open a cube twice"), so two
    amsweep.run calls on one cube from two threads of a notebook both ran: measured with the
    320-task spec, the second started 2 s after the first computed 147 tasks the first also
    computed (run totals 467 for 320 tasks), and both runs' records say "finished" with their own
    counts. `amsweep run` from another process is refused ("in use by another driver"); a second
    run in the same process should be too. Here the first run is a cube held open for writing."""
    import amsweep

    spec, out = _spec(tmp_path), str(tmp_path / "c.zarr")
    first = Cube.create_or_open(out, spec_mod.load(spec))  # the first run's hold on the cube
    try:
        with pytest.raises(AmsweepError, match="in use"):
            amsweep.run(spec, out=out, executor="serial")
    finally:
        first.release()


@pytest.mark.parametrize("how", ["api-None", "api-empty", "cli-empty"])
def test_a_missing_out_is_refused_not_written_into_the_current_folder(tmp_path, monkeypatch, how):
    """amsweep.run(spec, out=os.environ.get("CUBE")) with CUBE unset ran the sweep into ./None;
    out="" (and `amsweep run SPEC --out ""`) into the current folder itself (its ~45 arrays spread
    over an empty working folder). Each should be a one-line refusal that writes nothing."""
    import amsweep

    spec = _spec(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if how == "cli-empty":
        code = main(["run", spec, "--out", "", "--executor", "serial", "--quiet"])
        assert code == 2
    else:
        with pytest.raises(AmsweepError):
            amsweep.run(spec, out=None if how == "api-None" else "", executor="serial")  # type: ignore[arg-type]
    assert list(work.iterdir()) == []


def test_dry_run_of_a_folder_a_killed_creation_left_with_only_its_lease_says_a_run_creates_the_cube(tmp_path, capsys):
    """A creation killed right after taking the lease leaves only _amsweep/lease.json; `amsweep run`
    treats that folder as free (Cube._foreign_objects) and creates the cube, but its dry run said
    "exists and is not a Zarr v3 group; a run would refuse to touch it" (exit 2)."""
    spec, donor, out = _spec(tmp_path), tmp_path / "donor.zarr", tmp_path / "c.zarr"
    assert main(["run", spec, "--out", str(donor), "--executor", "serial", "--quiet"]) == 0
    (out / "_amsweep").mkdir(parents=True)
    (out / "_amsweep" / "lease.json").write_bytes((donor / "_amsweep" / "lease.json").read_bytes())  # released
    capsys.readouterr()
    dry = main(["run", spec, "--out", str(out), "--dry-run"])
    said = capsys.readouterr()
    assert main(["run", spec, "--out", str(out), "--executor", "serial", "--quiet"]) == 0  # the run goes
    assert dry == 0 and "a run would create it" in said.out, said.err


def test_dry_run_on_s3_says_no_bucket_only_when_s3_says_so(tmp_path, monkeypatch):
    """The run names a missing bucket from S3's NoSuchBucket code (store_errors.missing_bucket); the
    dry run from s3fs's exists(bucket), False for any failed HeadBucket/GetBucketLocation. A user
    whose policy allows objects under a prefix but not those bucket-level calls (403) was told
    "bucket 'bkt' does not exist; create it", though the run itself goes (it does here)."""
    import s3fs
    from botocore.exceptions import ClientError

    import amsweep
    from benchmarks._moto import moto_server

    real = s3fs.S3FileSystem._call_s3

    async def denied(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = getattr(method, "__name__", method)
        if name in ("head_bucket", "get_bucket_location"):
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, str(name))
        return await real(self, method, *args, **kwargs)

    spec = _spec(tmp_path)
    with moto_server(buckets=("bkt",)):
        monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", denied)
        s3fs.S3FileSystem.clear_instance_cache()
        assert amsweep.run(spec, out="s3://bkt/ran.zarr", executor="serial").done == 4  # the run goes
        plan = amsweep.run(spec, out="s3://bkt/new.zarr", dry_run=True)
        assert plan.creates and plan.to_run == 4
