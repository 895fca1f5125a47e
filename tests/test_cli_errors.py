"""How the CLI reports mistakes (issue 13): one line naming the flag or file for bad input, exit 2,
nothing written; a traceback and a request to report it for a bug, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from amsweep.sweeps import cli
from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import main
from amsweep.pipeline.executors import Failed, SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from tests.test_bad_specs import BASE_TOML


@pytest.fixture
def spec_file(tmp_path) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(BASE_TOML)
    return str(path)


def one_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_workers_must_be_a_positive_integer_before_anything_is_written(tmp_path, capsys, spec_file, value):
    """--workers -1 used to create the cube, then fail in Ray; --workers 0 silently meant all CPUs."""
    out = tmp_path / "o.zarr"
    assert main(["run", spec_file, "--out", str(out), "--workers", value]) == 2
    err = one_line(capsys, "amsweep run: error: argument --workers: expected an integer >= 1")
    assert repr(value) in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["rn"], "amsweep: error: argument command: invalid choice: 'rn'"),
        (["run", "quickstart"], "amsweep run: error: the following arguments are required: --out"),
        (["query", "c.zarr", "--metric", "m_train", "--max-rows", "-5"], "amsweep query: error: argument --max-rows"),
        (["phase", "c.zarr", "--at", "nan"], "amsweep phase: error: argument --at: expected a finite number"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, prefix):
    assert main(argv) == 2
    one_line(capsys, prefix)


def test_help_is_not_an_error(capsys):
    assert main(["run", "--help"]) == 0
    assert "--workers" in capsys.readouterr().out


def test_a_missing_spec_names_it(tmp_path, capsys):
    assert main(["run", "no_such_sweep", "--out", str(tmp_path / "o.zarr"), "--executor", "serial"]) == 2
    one_line(capsys, "amsweep run: error: spec 'no_such_sweep': no such file")
    assert not (tmp_path / "o.zarr").exists()


def test_an_output_that_cannot_be_written_is_refused_before_reading(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    target = str(blocker / "fig.png")
    assert main(["phase", str(tmp_path / "missing.zarr"), "-o", target]) == 2
    one_line(capsys, f"amsweep phase: error: -o {target}: cannot write there")
    assert main(["query", str(tmp_path / "missing.zarr"), "--metric", "m_train", "--csv", target]) == 2
    one_line(capsys, f"amsweep query: error: --csv {target}: cannot write there")


def test_no_retry_failed_does_not_claim_every_task_is_done(tmp_path, capsys, spec_file):
    """It used to print "nothing to do: every task is done" while tasks were failed."""
    out = str(tmp_path / "f.zarr")
    sweep = spec_mod.load(spec_file)
    report = run(
        Cube.create_or_open(out, sweep), SerialExecutor(), progress=False, cell=lambda *job: Failed("injected")
    )  # no cell computes: every task fails
    assert report.failed == 8
    assert main(["run", spec_file, "--out", out, "--executor", "serial", "--no-retry-failed", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert "nothing to do: 8 failed task(s) left failed (--no-retry-failed)" in stdout
    assert "every task is done" not in stdout


@pytest.mark.parametrize("error", [ZeroDivisionError("boom"), ValueError("boom"), KeyError("boom")])
def test_a_bug_keeps_its_traceback_and_asks_for_a_report(monkeypatch, capsys, error):
    """Bare KeyError and ValueError are no longer dressed up as input errors: they are bugs."""

    def broken(args):
        raise error

    monkeypatch.setattr(cli, "cmd_specs", broken)
    assert main(["specs"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and type(error).__name__ in err
    assert err.rstrip().splitlines()[-1].startswith("amsweep specs: this is a bug in amsweep")


def test_a_bug_inside_a_report_figure_shows_its_traceback_not_a_skipped_figure(
    tmp_path, monkeypatch, capsys, spec_file
):
    """A KeyError inside a figure used to be swallowed as "figure not made"; now `amsweep report`
    stops with the traceback (the figure's name and the original KeyError), exit 1."""
    from amsweep.analysis import figures

    out = str(tmp_path / "r.zarr")
    assert main(["run", spec_file, "--out", out, "--executor", "serial", "--quiet"]) == 0
    capsys.readouterr()

    def broken(*args, **kwargs):
        raise KeyError("m_tarin")

    monkeypatch.setattr(figures, "line_figure", broken)
    assert main(["report", out, "-o", str(tmp_path / "rep")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'm_tarin'" in err
    assert "FigureFailed: report figure 'overlaps_vs_load_noise0'" in err
    assert err.rstrip().splitlines()[-1].startswith("amsweep report: this is a bug in amsweep")


def test_a_cluster_that_cannot_be_joined_is_one_line_raised_where_ray_starts(tmp_path, monkeypatch, capsys, spec_file):
    """The CLI no longer turns a ValueError from starting the executor into an input error; the
    executor converts the failure to join the address the user gave, and only that."""
    import ray

    def refuse(**kwargs):
        raise ConnectionError(f"no cluster at {kwargs['address']}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    out = str(tmp_path / "c.zarr")
    assert main(["run", spec_file, "--out", out, "--address", "ray://nowhere:1", "--quiet"]) == 2
    one_line(capsys, "amsweep run: error: --address ray://nowhere:1: cannot join that Ray cluster (ConnectionError")
    assert not Path(out).exists()  # the cluster is joined before the cube is created
