"""attack23a (adversarial review of issue 23): joining a Ray cluster that is not there.

``RAY_ADDRESS=HOST:6379`` (or ``--address HOST:6379``) naming a cluster that has stopped (the
head crashed, the allocation ended, a typo in the port) is the common failure of the new
"honour RAY_ADDRESS" path. The driver then waits on Ray's GCS client, which retries without
end: measured at 36a0080 under this machine's load, ``amsweep run --address 127.0.0.1:<closed
port>`` had said nothing but Ray's retry warnings after 150 s and 300 s (killed both times);
with ``RAY_gcs_server_port_wait_time_s=2`` it took 85 s to say "cannot join". A ``ray://`` address
fails in ~30 s (tests/test_refusals.py). Fixed (fix23a): a TCP probe of the port before ``ray.init``
refuses it in one line within seconds.

Inside a Ray job (``ray job submit --runtime-env-json ... -- amsweep run``) Ray merges the job's
runtime environment with the one ``ray.init`` is given and refuses any field or environment
variable named in both. amsweep always passes ``env_vars`` OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS, and
``py_modules`` when there are plug-ins, so a job that sets OMP_NUM_THREADS (even to 1) or ships its
own py_modules is refused before any connection, and the message says "cannot join that Ray
cluster" about a cluster that is fine. Found at 36a0080 (1.5 s to the refusal). Fixed (fix23a): the
executor leaves out what the job's runtime env sets, and ships plug-ins per task where the job has
its own py_modules.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

SPEC = (
    'name = "q"\nseeds = 1\nnoise = [0.0]\nP_test = 4\n'
    "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
    "[datasets.random]\nN = [32]\nP = [3]\n[rules.hebb]\n"
)
BOUND = 40.0  # seconds: a closed port can be told at once; Ray's own first try gives up after ~35 s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stopped_cluster_in_ray_address_is_refused_promptly(tmp_path):
    spec, out = tmp_path / "q.toml", tmp_path / "c.zarr"
    spec.write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"RAY_ADDRESS": f"127.0.0.1:{closed_port()}", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", str(out), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"no answer within {BOUND:.0f} s") from None
    assert proc.returncode == 2, stderr
    assert "cannot join that Ray cluster" in stderr and not out.exists(), stderr


@pytest.mark.parametrize("job_env", ["env_vars", "py_modules"])
def test_a_ray_job_with_its_own_runtime_env_is_not_refused(tmp_path, job_env):
    """Ray's merge happens in ``ray.init`` before it connects, so a closed port stands in for the
    job's cluster: a fixed amsweep goes on to connect (and is refused for the port, or is still
    trying at the bound); it must not fail on the merge."""
    spec, out = tmp_path / "q.toml", tmp_path / "c.zarr"
    spec.write_text(SPEC)
    plugins = tmp_path / "plugins"
    (plugins / "rules").mkdir(parents=True)
    (plugins / "rules" / "nothing_here.txt").write_text("a plug-in folder the sweep does not use\n")
    runtime_env = {"env_vars": {"OMP_NUM_THREADS": "1"}} if job_env == "env_vars" else {"py_modules": [str(plugins)]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {
        "RAY_ADDRESS": f"127.0.0.1:{closed_port()}",  # what the job supervisor sets, with:
        "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps({"runtime_env": runtime_env, "metadata": {}}),
        "AMSWEEP_PLUGIN_PATH": str(plugins),
        "HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", str(out), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    assert "Failed to merge the Job's runtime env" not in stderr, stderr


@pytest.mark.parametrize(
    "job_env",
    [{}, {"env_vars": {"OMP_NUM_THREADS": "4"}}, {"py_modules": ["/job/own_package"]}],
    ids=["no-job", "env_vars", "py_modules"],
)
def test_what_ray_init_is_given_merges_with_the_jobs_runtime_env(job_env):
    """The merge itself (the test above stops at the closed port's refusal, before ``ray.init``):
    Ray's own merge rule accepts what the executor gives ``ray.init``, the job's settings win, and
    amsweep's plug-ins are in the job's env unless the job ships its own py_modules (then they go
    with each task)."""
    from ray.runtime_env.runtime_env import _merge_runtime_env

    from amsweep.pipeline.ray_executor import PINNED_THREADS, init_runtime_env

    staged = ["/tmp/staging/amsweep_shipped_0123"]
    merged = _merge_runtime_env(job_env, init_runtime_env(job_env, staged))
    assert merged is not None, "Ray would refuse the merge"
    assert merged["env_vars"] == PINNED_THREADS | job_env.get("env_vars", {})
    assert merged["py_modules"] == job_env.get("py_modules", staged)
