"""``amsweep slurm`` against a real Slurm (Debian's slurmctld, slurmd and munge on localhost).

The module fixture starts a private munged, slurmctld and slurmd (own key, slurm.conf, ports and
state in a tmp folder; SLURM_CONF points the clients at it), so nothing of the machine's own Slurm
is used or touched. Without the binaries (or root) the test is skipped, except under CI (``CI``
set), where it fails: .ci/run installs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import AmsweepError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from amsweep.sweeps.cli import main
from amsweep.sweeps.runner import run
from tests.conftest import assert_same_cube

AMSWEEP = str(Path(sys.executable).with_name("amsweep"))
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "srun")

# 384 cells of ~8 ms (3 s serially): on one Ray CPU, a window of seconds to kill the job in.
SPEC = """
name = "slurm_test"
description = "amsweep slurm test: a requeued job resumes the cube"
root_seed = 11
seeds = 16
noise = [0.0, 0.2]
P_test = 10

[retrieval]
train_starts = 20
test_starts = 10
random_starts = 5

[datasets.random]
N = [64, 96]
alpha = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]

[rules.hebb]

[rules.plm]
epochs = 60
lr = 1.0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ok, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ok()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


CONF = """ClusterName=amsweeptest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
NodeName=localhost CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster on localhost: (environment with SLURM_CONF, its folder)."""
    missing = [b for b in DAEMONS if shutil.which(b) is None]
    why = f"Slurm binaries missing: {', '.join(missing)}" if missing else ""
    if not why and os.geteuid() != 0:
        why = "slurmd must run as root"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (.ci/run installs slurmctld, slurmd, slurm-client and munge as root)")
        pytest.skip(why)
    d = tmp_path_factory.mktemp("slurm")
    d.chmod(0o711)  # munged checks that its socket's folder is reachable but not writable by all
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    subprocess.run(["mungekey", "-c", "-k", str(d / "munge.key")], check=True, capture_output=True)
    cpus = os.cpu_count() or 1
    conf = d / "slurm.conf"
    conf.write_text(CONF.format(d=d, ctld_port=free_port(), slurmd_port=free_port(), cpus=cpus))
    env = {**os.environ, "SLURM_CONF": str(conf), "RAY_USAGE_STATS_ENABLED": "0"}
    procs: list[subprocess.Popen] = []

    def daemon(name: str, *argv: str) -> None:
        log = open(d / f"{name}.out", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen([name, *argv], env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        munge = [f"--key-file={d}/munge.key", f"--socket={d}/munge.sock", f"--pid-file={d}/munged.pid"]
        daemon("munged", "-F", "-f", *munge, f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed")
        _wait("munged's socket", lambda: (d / "munge.sock").exists(), 20)
        daemon("slurmctld", "-D", "-i", "-f", str(conf))
        daemon("slurmd", "-D", "-N", "localhost", "-f", str(conf))

        def idle() -> bool:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return state.stdout.strip() == "idle"

        _wait("the Slurm node to be idle", idle, 60, every=0.5)
        yield env, d
    finally:
        if procs:  # no job outlives its daemons: a running job's processes would survive slurmd
            subprocess.run(["scancel", "--full", "--partition=debug"], env=env, capture_output=True)
            try:
                _wait("the jobs to end", lambda: not _squeue(env), 60, every=0.5)
            except AssertionError:
                pass
        for proc in reversed(procs):
            _stop(proc)


def _squeue(env: dict[str, str]) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True).stdout.strip()


def _job(env: dict[str, str], job: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def _done(out: Path) -> tuple[int, int]:
    try:
        status = Cube.open(str(out)).status()
    except (AmsweepError, FileNotFoundError):
        return 0, 0
    return int((status == DONE).sum()), int(status.size)


def test_requeued_job_resumes_the_cube_exactly(slurm, tmp_path):
    """Submit, kill the job mid-run with `scontrol requeue`, let Slurm start it again: the cube
    equals a serial run's value for value, and the log shows the two starts."""
    env, _ = slurm
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "cube.zarr"
    argv = [AMSWEEP, "slurm", str(spec), "--out", str(out), "--nodes", "1", "--time", "00:10:00"]
    argv += ["--cpus-per-node", "1", "--quiet"]  # one CPU: a longer window to kill in; the head's port found per job
    submitted = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = re.search(r"submitted job (\d+)", submitted.stdout).group(1)  # type: ignore[union-attr]
    script = Path(f"{out}.sbatch")
    assert "#SBATCH --requeue" in script.read_text()
    log = Path(f"{out}.{job}.out")

    def shown() -> str:
        return log.read_text() if log.exists() else "(no log yet)"

    try:
        _wait("the first results", lambda: _done(out)[0] > 0, 180)
    except AssertionError:
        raise AssertionError(f"job {job}: {_job(env, job).get('JobState')}; log:\n{shown()}") from None
    subprocess.run(["scontrol", "requeue", job], env=env, check=True, capture_output=True)

    # Slurm holds a requeued job for ~2 minutes (BeginTime = now + 121 s, so that the killed
    # job's processes are gone): release it as soon as it is pending again.
    def held() -> bool:  # requeue fully processed: pending, and held by the BeginTime Slurm set
        info = _job(env, job)
        return info.get("JobState") == "PENDING" and info.get("Reason") == "BeginTime"

    _wait("the job to be pending again", held, 60)
    done, total = _done(out)  # the driver is dead: what the cube held when it was killed
    assert 0 < done < total, f"the job was not killed mid-run ({done} of {total} tasks done)"
    print(f"killed with {done} of {total} tasks done")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True, capture_output=True)

    def ended() -> str | None:
        state = _job(env, job).get("JobState")
        return state if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") else None

    state = _wait("the requeued job to end", ended, 240, every=0.5)
    text = shown()
    assert state == "COMPLETED", f"job {job} ended {state}; log:\n{text}"
    assert "(start 1)" in text and "(start 2)" in text, text
    assert "driver exit status 0" in text, text
    assert _job(env, job).get("Restarts") == "1"

    reference = tmp_path / "serial.zarr"
    run(Cube.create_or_open(str(reference), spec_mod.load(spec)), SerialExecutor(), progress=False)
    assert_same_cube(str(out), str(reference))
    assert (np.asarray(Cube.open(str(out)).status()) == DONE).all()


def test_bad_input_is_refused_before_anything_is_submitted(tmp_path, capsys, monkeypatch):
    """A bad spec, time or option, or a cube `amsweep run` would refuse: exit status 2 with
    `run`'s message, no script written, nothing submitted."""
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "cube.zarr"
    cases = {
        "spec 'nope'": ["nope", "--out", str(out), "--nodes", "2", "--time", "1:00:00"],
        "--time": [str(spec), "--out", str(out), "--nodes", "2", "--time", "an hour"],
        "at least 5 minutes": [str(spec), "--out", str(out), "--nodes", "2", "--time", "00:01:00"],
        "--extra-sbatch": [str(spec), "--out", str(out), "--nodes", "2", "--time", "1:00:00", "--extra-sbatch", "x"],
    }
    for said, argv in cases.items():
        assert main(["slurm", *argv]) == 2, said
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, (said, err)
    assert not list(tmp_path.glob("*.sbatch")) and not out.exists()

    Cube.create_or_open(str(out), spec_mod.load(spec)).release()  # a cube of this spec, nothing run yet
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("noise = [0.0, 0.2]", "noise = [0.0, 0.3]"))
    assert main(["slurm", str(other), "--out", str(out), "--nodes", "1", "--time", "1:00:00"]) == 2
    assert "was written by another spec" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.sbatch"))

    only = tmp_path / "job.sbatch"
    argv = [AMSWEEP, "slurm", str(spec), "--out", str(out), "--nodes", "3", "--time", "2-00:00:00"]
    done = subprocess.run([*argv, "--write-only", str(only), "--partition", "long"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the console script, as a user types it
    text = only.read_text()
    for line in ("--nodes=3", "--time=2-00:00:00", "--partition=long", "--exclusive", "--signal=B:USR1@180"):
        assert f"#SBATCH {line}\n" in text
    assert f"spec={spec}\n" in text and f"out={out}\n" in text

    monkeypatch.setenv("PATH", str(Path(AMSWEEP).parent))  # a machine without Slurm's clients
    assert main(["slurm", str(spec), "--out", str(out), "--nodes", "1", "--time", "1:00:00", "--quiet"]) == 2
    assert "sbatch not found: run `amsweep slurm` on a Slurm login node" in capsys.readouterr().err


def test_a_lease_left_on_another_node_is_waited_out(tmp_path, monkeypatch):
    """A job preempted on another node leaves its driver's lease with a fresh heartbeat; the
    next start waits until it is stale (then `amsweep run` takes it over) instead of failing."""
    from amsweep.storage import lease
    from amsweep.storage.objects import objects_at
    from amsweep.sweeps.slurm import main

    monkeypatch.setenv(lease.STALE_ENV, "1.5")
    out = str(tmp_path / "cube.zarr")
    record = {"holder": "node7:4242", "host": "node7", "pid": 4242, "token": "t", "generation": 1}

    def waited(**fields) -> float:
        objects_at(out).put(lease.KEY, json.dumps({**record, **fields, "heartbeat_epoch": time.time()}).encode())
        t = time.monotonic()
        assert main(["wait-lease", out]) == 0
        return time.monotonic() - t

    assert 1.5 <= waited() < 10
    assert waited(host=lease.HOST) < 1  # this host's: `amsweep run` judges its pid at once
    assert waited(released=True) < 1
