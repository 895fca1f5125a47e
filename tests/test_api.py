"""The Python API (``amsweep.run``, ``amsweep.open``), ``amsweep run --dry-run`` and ``amsweep specs``
(issue 23): one way to run, shared by the command line and Python, and the README's example as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from amsweep.pipeline.errors import CubeError
from amsweep.sweeps.arguments import BUNDLED
from amsweep.sweeps.cli import main
from tests.conftest import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SPEC = """
name = "tiny"
root_seed = 11
seeds = {seeds}
noise = {noise}
P_test = 6

[retrieval]
train_starts = 8
test_starts = 6
random_starts = 3

[datasets.random]
N = {N}
alpha = [0.05, 0.3]

[rules.hebb]
"""


def _spec(path: Path, seeds: int = 2, N: str = "[48]", noise: str = "[0.0, 0.15]") -> str:
    path.write_text(SPEC.format(seeds=seeds, N=N, noise=noise))
    return str(path)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file of a cube with its size and modification time: a dry run changes none."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def test_import_amsweep_is_cheap_and_gives_the_api():
    """``import amsweep`` loads no Ray, numba or zarr (a notebook imports it first thing); the API
    names resolve on first use."""
    code = (
        "import sys, amsweep; heavy = [m for m in ('ray', 'numba', 'zarr', 'xarray') if m in sys.modules]; "
        "assert not heavy, heavy; import inspect; "
        "print(sorted(inspect.signature(amsweep.run).parameters)); print(amsweep.open.__module__, amsweep.RunSummary)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'dry_run'" in out.stdout and "'executor'" in out.stdout and "'address'" in out.stdout
    assert "amsweep.sweeps.api" in out.stdout


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python API section has no python block"
    return blocks[0]


def test_readme_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_example(), "README.md#python-api", "exec"), namespace)
    summary, plan, ds = namespace["summary"], namespace["plan"], namespace["ds"]
    assert (summary.tasks, summary.to_run, summary.done, summary.failed, summary.remaining) == (8, 8, 8, 0, 0)
    assert not summary.interrupted and summary.where["executor"] == "serial"
    assert plan.dry_run and plan.new_tasks == 4 and plan.added == {"seed": {2: 4}}
    assert (plan.to_run, plan.tasks) == (4, 12)
    assert int((ds["status"] == 1).sum()) == 8  # the 8 done tasks, not the 4 a dry run only planned
    assert set(ds["m_train"].dims) >= {"N", "alpha", "rule", "seed", "noise"}


def test_dry_run_says_what_an_extension_adds_then_the_run_does_exactly_that(tmp_path, capsys):
    import amsweep

    cube = tmp_path / "c.zarr"
    base = _spec(tmp_path / "base.toml")
    assert main(["run", base, "--out", str(cube), "--executor", "serial", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "done 4, failed 0" in out and "no data file" not in out  # nothing said about nothing to ship

    before = _snapshot(cube)
    grown = _spec(tmp_path / "grown.toml", seeds=3, N="[48, 64]")
    # A Ray address nobody listens at: a dry run that started an executor would fail to join it.
    assert main(["run", grown, "--out", str(cube), "--address", "ray://127.0.0.1:9", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "adds N: 64 (+6 tasks)" in out and "adds seed: 2 (+4 tasks)" in out, out
    assert "8 new task(s), 0 pending" in out and "8 task(s) to run of 12" in out, out
    assert _snapshot(cube) == before

    fresh = tmp_path / "new.zarr"
    assert main(["run", grown, "--out", str(fresh), "--dry-run"]) == 0
    assert "a run would create it" in capsys.readouterr().out and not fresh.exists()

    plan = amsweep.run(grown, out=str(cube), dry_run=True)
    summary = amsweep.run(grown, out=str(cube), executor="serial")
    assert (plan.to_run, plan.tasks) == (summary.to_run, summary.tasks) == (8, 12)
    assert (summary.done, summary.remaining, summary.exit_code) == (8, 0, 0)
    assert amsweep.run(grown, out=str(cube), dry_run=True).to_run == 0


def test_an_added_noise_level_is_refused_with_the_reason(tmp_path, capsys):
    import amsweep

    cube = tmp_path / "c.zarr"
    amsweep.run(_spec(tmp_path / "base.toml"), out=str(cube), executor="serial")
    before = _snapshot(cube)
    noisier = _spec(tmp_path / "noisier.toml", noise="[0.0, 0.1, 0.15]")
    for dry in ([], ["--dry-run"]):
        assert main(["run", noisier, "--out", str(cube), "--executor", "serial", *dry]) == 2
        err = capsys.readouterr().err
        assert "adds noise level(s) [0.1], but noise is not a task axis" in err, err
        assert "recomputing every done task" in err and "only additions" not in err
    with pytest.raises(CubeError, match="noise is not a task axis"):
        amsweep.run(noisier, out=str(cube), executor="serial")
    assert _snapshot(cube) == before


def test_run_refuses_an_unknown_executor_or_option_before_touching_anything(tmp_path):
    import amsweep

    from amsweep.pipeline.errors import AmsweepError

    with pytest.raises(AmsweepError, match="executor 'dask'"):
        amsweep.run("smoke", out=str(tmp_path / "c.zarr"), executor="dask")
    with pytest.raises(AmsweepError, match="workers is not an option of executor 'serial'"):
        amsweep.run("smoke", out=str(tmp_path / "c.zarr"), executor="serial", workers=2)
    assert not (tmp_path / "c.zarr").exists()


def test_specs_lists_paths_and_shows_a_spec_to_start_from(capsys):
    assert main(["specs"]) == 0
    listing = capsys.readouterr().out
    assert str(BUNDLED / "quickstart.toml") in listing and str(BUNDLED / "smoke.toml") in listing
    assert main(["specs", "--show", "smoke"]) == 0
    shown = capsys.readouterr().out
    assert shown == (BUNDLED / "smoke.toml").read_text()
    assert tomllib.loads(shown)["name"] == "smoke"
    assert main(["specs", "--show", "no_such_sweep"]) == 2
    assert "no bundled sweep of that name" in capsys.readouterr().err
