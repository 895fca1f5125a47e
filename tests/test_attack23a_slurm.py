"""attack23a (adversarial review of issue 23): the sbatch script ``amsweep slurm`` writes, for
paths a user may well have (a folder with a space, a ``%``, a newline).

``#SBATCH --output=`` is written unquoted: with a space in the cube's folder sbatch refuses the
script ("Invalid directive found in batch script"), so such a cube cannot be run on Slurm at all;
a ``%`` in it is a Slurm pattern (``%x`` = job name), so the log goes to a folder that does not
exist instead of the path ``amsweep slurm`` prints ("log ..."); a newline in ``--out`` ends the
script's comment line and becomes a command.
Found at 36a0080, strict xfails for the lead. The Slurm cases submit a *held* job (it never runs:
no Ray starts) to the private Slurm of tests/test_slurm.py and read back where Slurm will write.

The job's Ray head uses a fixed port (``--port``, default Ray's 6379) and the script takes any
answer on that port for its own head. On a node shared with another job whose Ray uses the port
(two ``amsweep slurm --cpus-per-node`` jobs, or anyone's Ray on 6379), the job's head fails to
start and its driver joins the *other* job's cluster: with the user's own token (RAY_AUTH_MODE set,
as ~/.ray/auth_token on a shared home does) the sweep silently runs on the other job's allocation
(exit 0, COMPLETED); with the job's own token it is refused after ~20 s with "the cluster requires
token authentication ... set RAY_AUTH_MODE=token and give it the head's token", advice that leads
to the first case (seen by hand at 36a0080, not made a test: ~60 s).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from amsweep.sweeps.cli import main
from tests.test_cluster import RAY, alive_nodes, kill_node, start
from tests.test_slurm import AMSWEEP, _job, _wait, free_port, slurm  # noqa: F401 (module fixture: a one-node Slurm)

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


def where_slurm_writes(env: dict[str, str], held: str, script: Path, tmp_path: Path) -> tuple[str, Path]:
    """Cancel the held job, then run a trivial job under the script's own ``#SBATCH --output=``
    line: (its job id, the file it wrote). Not scontrol's StdOut: for ``%%`` it shows ``%x``
    expanded (``pct%amsweep-q``, Slurm 22.05) while the job writes to ``pct%x`` (seen by hand)."""
    subprocess.run(["scancel", held], env=env, capture_output=True)
    directive = next(x for x in script.read_text().splitlines() if x.startswith("#SBATCH --output="))
    probe = tmp_path / "probe.sh"
    probe.write_text(f"#!/bin/bash\n{directive}\n#SBATCH --cpus-per-task=1\necho written\n")
    done = subprocess.run(["sbatch", "--parsable", str(probe)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip().split(";")[0]

    def ended() -> bool:
        return _job(env, job).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED")

    _wait("the probe job to end", ended, 60, every=0.2)
    return job, Path(directive.split("=", 1)[1].strip('"').replace("%%", "%").replace("%j", job))


@pytest.mark.parametrize("folder", ["my runs", "pct%x"], ids=["space", "percent"])
def test_the_job_log_is_where_amsweep_slurm_says(slurm, tmp_path, folder):  # noqa: F811
    env, _ = slurm
    spec, out = tmp_path / "q.toml", tmp_path / folder / "c.zarr"
    spec.write_text(SPEC)
    out.parent.mkdir()
    job, printed = submit_held(env, spec, out)
    assert printed == f"{out}.{job}.out"
    assert _job(env, job).get("JobState") == "PENDING"  # sbatch took the script (a space was "Invalid directive")
    probe, written = where_slurm_writes(env, job, Path(f"{out}.sbatch"), tmp_path)
    expected = Path(printed.replace(f".{job}.out", f".{probe}.out"))
    assert expected.exists() and expected.read_text() == "written\n", sorted(map(str, tmp_path.rglob("*.out")))


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


def test_a_job_never_runs_its_sweep_on_another_jobs_ray(slurm, tmp_path):  # noqa: F811
    env, _ = slurm
    port = free_port()
    ip = subprocess.run(["hostname", "--ip-address"], capture_output=True, text=True).stdout.split()[0]
    address = f"{ip}:{port}"
    token = secrets.token_hex(16)  # the user's token, as ~/.ray/auth_token on a shared home gives every job
    other = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    other |= {"HOME": str(tmp_path), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    other |= {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    head = start(  # another job's Ray on this node, on the port this job will ask for
        [RAY, "start", "--head", f"--node-ip-address={ip}", f"--port={port}", "--num-cpus=1"]
        + ["--include-dashboard=false", "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}"],
        other,
    )
    try:
        alive_nodes(other, address, 1)
        spec, out = tmp_path / "q.toml", tmp_path / "c.zarr"
        spec.write_text(SPEC)
        argv = [AMSWEEP, "slurm", str(spec), "--out", str(out), "--nodes", "1", "--time", "00:10:00"]
        argv += ["--cpus-per-node", "1", "--port", str(port), "--quiet"]
        done = subprocess.run(argv, env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, text=True,
                              capture_output=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        job = re.search(r"submitted job (\d+)", done.stdout).group(1)  # type: ignore[union-attr]

        def ended() -> str | None:
            state = _job(env, job).get("JobState")
            return state if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None

        try:
            _wait("the job to end", ended, 180, every=0.5)
        finally:
            subprocess.run(["scancel", job], env=env, capture_output=True)
        probe = "import json, ray; ray.init(address=%r, logging_level='ERROR'); print(json.dumps(" % address
        probe += "[j['Entrypoint'] for j in ray._private.state.jobs()]))"
        listed = subprocess.run([sys.executable, "-c", probe], env=other, capture_output=True, text=True, timeout=120)
        entrypoints = json.loads(listed.stdout.strip().splitlines()[-1])
        assert not [e for e in entrypoints if "amsweep" in e], entrypoints  # no driver of the job on the other Ray
    finally:
        kill_node(head)
        pointer = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")
        if pointer.exists() and pointer.read_text().strip() == address:
            pointer.unlink()


def test_a_port_out_of_range_is_refused_before_submitting(tmp_path, capsys):
    spec = tmp_path / "q.toml"
    spec.write_text(SPEC)
    argv = ["slurm", str(spec), "--out", str(tmp_path / "c.zarr"), "--nodes", "1", "--time", "10:00"]
    code = main([*argv, "--port", "70000", "--write-only", str(tmp_path / "job.sbatch")])
    err = capsys.readouterr().err
    assert code == 2 and "--port" in err and not (tmp_path / "job.sbatch").exists(), err
