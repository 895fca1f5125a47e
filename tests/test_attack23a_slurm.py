"""attack23a (adversarial review of issue 23): the sbatch script ``amsweep slurm`` writes, for
paths a user may well have (a folder with a space, a ``%``, a newline).

``#SBATCH --output=`` is written unquoted: with a space in the cube's folder sbatch refuses the
script ("Invalid directive found in batch script"), so such a cube cannot be run on Slurm at all;
a ``%`` in it is a Slurm pattern (``%x`` = job name), so the log goes to a folder that does not
exist instead of the path ``amsweep slurm`` prints ("log ..."); a newline in ``--out`` ends the
script's comment line and becomes a command.
Found at 36a0080, strict xfails for the lead. The Slurm cases submit a *held* job (it never runs:
no Ray starts) to the private Slurm of tests/test_slurm.py and read back where Slurm will write.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from amsweep.sweeps.cli import main
from tests.test_slurm import AMSWEEP, _job, slurm  # noqa: F401 (the module fixture: a private one-node Slurm)

SPEC = (
    'name = "q"\nseeds = 1\nnoise = [0.0]\nP_test = 4\n'
    "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
    "[datasets.random]\nN = [32]\nP = [3]\n[rules.hebb]\n"
)


def submit_held(env: dict[str, str], spec: Path, out: Path) -> tuple[str, str]:
    """Submit a held job for ``out``; (job id, the log path amsweep slurm printed)."""
    argv = [AMSWEEP, "slurm", str(spec), "--out", str(out), "--nodes", "1", "--time", "00:10:00"]
    argv += ["--cpus-per-node", "1", "--extra-sbatch=--hold", "--quiet"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    job = re.search(r"submitted job (\d+)", done.stdout).group(1)  # type: ignore[union-attr]
    log = re.search(r"; log (.+)$", done.stdout, re.M).group(1)  # type: ignore[union-attr]
    return job, log


def slurm_stdout(env: dict[str, str], job: str) -> str:
    """Where Slurm will write the job's output (scontrol's StdOut, which may hold a space)."""
    text = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    subprocess.run(["scancel", job], env=env, capture_output=True)
    return re.search(r"StdOut=(.*)$", text, re.M).group(1).strip()  # type: ignore[union-attr]


@pytest.mark.parametrize("folder", ["my runs", "pct%x"], ids=["space", "percent"])
@pytest.mark.xfail(
    strict=True,
    reason="attack23a: `#SBATCH --output=` is unquoted and unescaped: with a space in the cube's folder sbatch "
    "refuses the script ('Invalid directive'); a `%x` in it is expanded to the job name, so the log goes to a "
    "folder that does not exist, not where `amsweep slurm` says",
)
def test_the_job_log_is_where_amsweep_slurm_says(slurm, tmp_path, folder):  # noqa: F811
    env, _ = slurm
    spec, out = tmp_path / "q.toml", tmp_path / folder / "c.zarr"
    spec.write_text(SPEC)
    out.parent.mkdir()
    job, printed = submit_held(env, spec, out)
    assert printed == f"{out}.{job}.out"
    assert _job(env, job).get("JobState") == "PENDING"
    assert slurm_stdout(env, job) == printed


@pytest.mark.xfail(
    strict=True,
    reason="attack23a: a newline in --out is neither refused nor quoted in the script's comment and "
    "#SBATCH --output lines: what follows it runs as a command",
)
def test_a_newline_in_out_cannot_add_a_command_to_the_script(tmp_path, capsys):
    spec = tmp_path / "q.toml"
    spec.write_text(SPEC)
    out = f"{tmp_path}/x\necho INJECTED\n.zarr"
    script = tmp_path / "job.sbatch"
    code = main(["slurm", str(spec), "--out", out, "--nodes", "1", "--time", "10:00", "--write-only", str(script)])
    capsys.readouterr()
    if code == 2:
        return  # refused with a one-line error: fine
    assert "echo INJECTED" not in script.read_text().splitlines()
