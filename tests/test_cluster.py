"""A real two-node Ray cluster on loopback with token authentication on: `ray job submit` of a bare
`amsweep run` uses both nodes, a driver without the token is told what to set, data files are
shipped, and a sweep survives the death of its worker node.

One cluster serves the module (starting it costs ~20 s here); a test that kills the worker node
leaves the next test to start another one."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import AmsweepError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.ray_executor import IN_RAY_JOB, where_to_run
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from tests.conftest import assert_same_cube, wait_for_first_flush

RAY = str(Path(sys.executable).with_name("ray"))
CLUSTER_SPEC = """
name = "cluster"
root_seed = 3
seeds = 20
noise = [0.0, 0.2]
P_test = 10
[retrieval]
train_starts = 30
test_starts = 10
random_starts = 5
[datasets.random]
N = [300]
alpha = [0.3, 0.5]
[rules.plm]
epochs = 2000
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A `ray start --block` in its own process group, so that killpg takes the whole node."""
    return subprocess.Popen(
        cmd + ["--block"], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill_node(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def alive_nodes(env: dict[str, str], address: str, count: int, without: str = "", timeout: float = 90.0) -> list[str]:
    """Wait until exactly ``count`` nodes are alive, none of them ``without`` (a killed node stays
    "alive" to Ray for some seconds); their ids, head first."""
    probe = (
        "import json, ray, time, sys\n"
        f"ray.init(address='{address}', logging_level='ERROR')\n"
        "t = time.time()\n"
        "while True:\n"
        "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
        "    nodes.sort(key=lambda n: 'node:__internal_head__' not in n['Resources'])\n"
        "    ids = [n['NodeID'] for n in nodes]\n"
        f"    if len(ids) == {count} and {without!r} not in ids:\n"
        "        print(json.dumps(ids)); break\n"
        "    time.sleep(0.5)\n"
        f"    if time.time() - t > {timeout}: sys.exit(1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        check=True,
        timeout=timeout + 60,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


class Cluster:
    """A head (with the job server) and one worker node on 127.0.0.1, token authentication on."""

    def __init__(self, home: Path) -> None:
        self.port, self.dashboard = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOME": str(home),  # nothing reads or writes the real ~/.ray
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",  # the head requires this token of every node, driver and job client
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "RAY_USAGE_STATS_ENABLED": "0",
            "AMSWEEP_CACHE": str(home / "node-cache"),  # shipped files land here
        }
        for name in ("RAY_ADDRESS", IN_RAY_JOB):
            self.env.pop(name, None)
        self.head = start(
            [
                RAY,
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={self.port}",
                "--num-cpus=1",
                "--include-dashboard=true",  # the job server `ray job submit` talks to
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard}",
                f"--dashboard-agent-listen-port={free_port()}",  # Ray's default 52365 may be taken
                "--disable-usage-stats",
            ],
            self.env,
        )
        self.worker: subprocess.Popen | None = None
        self.worker_id = ""

    def start_worker(self) -> None:
        killed = self.worker_id
        self.worker = start(
            [
                sys.executable,
                "-m",
                "tests.cluster.loopback_node",
                f"--address={self.address}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                f"--dashboard-agent-listen-port={free_port()}",
                "--disable-usage-stats",
            ],
            {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"},
        )
        self.worker_id = alive_nodes(self.env, self.address, 2, without=killed)[1]

    def stop(self) -> None:
        if self.worker is not None:
            kill_node(self.worker)
        kill_node(self.head)
        # `ray stop` would remove Ray's pointer to the latest cluster, but it would also stop every
        # other Ray on the machine; the nodes were killed instead, so drop the pointer if it is ours.
        pointer = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")
        if pointer.exists() and pointer.read_text().strip() == self.address:
            pointer.unlink()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster-home"))
    try:
        alive_nodes(c.env, c.address, 1)
        c.start_worker()
        yield c
    finally:
        c.stop()


@pytest.fixture
def two_node_cluster(cluster):
    """(address, env, worker process): both nodes alive; a worker node an earlier test killed is replaced."""
    if cluster.worker is None or cluster.worker.poll() is not None:
        cluster.start_worker()
    return cluster.address, cluster.env, cluster.worker


def test_the_cluster_joined_is_the_configured_one():
    """--address wins; RAY_ADDRESS (set by Ray's job supervisor, or by the user) is joined; nothing
    else is: Ray's pointer to the last `ray start` cluster may name a dead one."""
    job = {"RAY_ADDRESS": "10.0.0.1:6379", IN_RAY_JOB: "{}"}
    assert where_to_run("10.0.0.2:6379", job) == ("10.0.0.2:6379", "--address")
    assert where_to_run(None, job) == ("10.0.0.1:6379", "Ray job")
    assert where_to_run(None, {"RAY_ADDRESS": "auto"}) == ("auto", "RAY_ADDRESS")
    assert where_to_run(None, {"RAY_ADDRESS": "local"}) == (None, "local")
    assert where_to_run(None, {}) == (None, "local")
    with pytest.raises(AmsweepError, match=r"RAY_ADDRESS http://127.0.0.1:8265 is a Ray job server .*`ray job submit"):
        where_to_run(None, {"RAY_ADDRESS": "http://127.0.0.1:8265"})  # what Ray's job docs have users export


def test_the_serial_executor_describes_this_machine():
    """The keys the run history records, JSON-safe, and the lines `amsweep run` prints from them."""
    from amsweep.pipeline.executors import used, where

    ex = SerialExecutor()
    d = json.loads(json.dumps(ex.describe()))
    assert d == {
        **d,
        "executor": "serial",
        "address": None,
        "nodes": 1,
        "cpus": 1,
        "nodes_used": [socket.gethostname()],
    }
    assert d["memory_bytes"] > 0
    assert where(ex).startswith("cells run one at a time in this process") and "GiB" in where(ex)
    assert used(ex) == f"cells ran on 1 node(s): {socket.gethostname()}"


def test_ray_job_submit_of_a_bare_run_uses_both_nodes(tmp_path, cluster, two_node_cluster):
    """The README's recipe: `ray job submit -- amsweep run SPEC --out CUBE`, no --address; the driver
    joins the job's cluster, says so, and the cells it ran on both nodes equal a serial run's."""
    address, env, _ = two_node_cluster
    spec_path = tmp_path / "job.toml"
    spec_path.write_text(CLUSTER_SPEC.replace("seeds = 20", "seeds = 4"))
    out = str(tmp_path / "job.zarr")
    amsweep = str(Path(sys.executable).with_name("amsweep"))
    submit = [RAY, "job", "submit", f"--address=http://127.0.0.1:{cluster.dashboard}", "--"]
    job = subprocess.run(
        [*submit, amsweep, "run", str(spec_path), "--out", out, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout
    assert f"Ray cluster at {address} (from Ray job): 2 node(s), 2 CPU(s)" in job.stdout, job.stdout
    assert "cells ran on 2 node(s): 127.0.0.1/" in job.stdout, job.stdout
    assert (Cube.open(out).status() == DONE).all()
    reference = str(tmp_path / "serial.zarr")
    run(Cube.create_or_open(reference, spec_mod.load(spec_path)), SerialExecutor(), progress=False)
    assert_same_cube(out, reference)


def test_a_driver_without_the_token_is_told_what_to_set(tmp_path, two_node_cluster):
    """RAY_ADDRESS names the cluster (the driver joins it, no local Ray), but this shell has neither
    RAY_AUTH_MODE nor the token: one line says what to set, and --out is not created."""
    address, env, _ = two_node_cluster
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(CLUSTER_SPEC)
    out = tmp_path / "never.zarr"
    bare = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    bare |= {"RAY_ADDRESS": address, "RAY_gcs_server_port_wait_time_s": "2"}  # Ray retries ~20 s by default
    done = subprocess.run(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec_path), "--out", str(out)],
        env=bare,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("amsweep run: error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"amsweep run: error: RAY_ADDRESS={address}: the cluster requires token auth"), errors
    assert "set RAY_AUTH_MODE=token" in errors[0] and "RAY_AUTH_TOKEN" in errors[0], errors[0]
    assert "Traceback" not in done.stderr and not out.exists()


SHIPPED_SPEC = """
name = "shipped"
root_seed = 4
seeds = 4
noise = [0.0, 0.2]
P_test = 20
[retrieval]
train_starts = 20
test_starts = 20
random_starts = 5
[datasets.proteins]
P = [20, 60]
path = "{path}"
[rules.hebb]
[rules.plm]
epochs = 30
"""


def test_a_driver_local_data_file_is_shipped_and_batches_equal_serial(tmp_path, two_node_cluster):
    """The alignment exists only on the driver and is deleted once shipped: the workers read the
    copy that came through Ray's object store; 2 cells per task on two nodes equal a serial run."""
    from amsweep.pipeline.datasets.proteins import BUNDLED

    address, env, _ = two_node_cluster
    local = tmp_path / "driver-only" / "family.a2m.gz"
    local.parent.mkdir()
    local.write_bytes(BUNDLED.read_bytes())
    spec_path = tmp_path / "shipped.toml"
    spec_path.write_text(SHIPPED_SPEC.format(path=local))
    sweep = spec_mod.load(spec_path)
    out = str(tmp_path / "shipped.zarr")
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amsweep.sweeps.cli",
            "run",
            str(spec_path),
            "--out",
            out,
            "--address",
            address,
            "--cells-per-task",
            "2",
            "--quiet",
        ],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in driver.stdout:
        lines.append(line)
        if "data file(s) to the workers" in line:
            break
    assert "shipped 1 data file(s)" in "".join(lines), "".join(lines)
    local.unlink()
    local.parent.rmdir()
    text, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, "".join(lines) + text
    assert (Cube.open(out).status() == DONE).all()
    reference = str(tmp_path / "serial.zarr")
    spec_path.write_text(SHIPPED_SPEC.format(path=BUNDLED))
    run(Cube.create_or_open(reference, spec_mod.load(spec_path)), SerialExecutor(), progress=False)
    assert len(list(sweep.tasks())) == 16
    assert_same_cube(out, reference)


DRIVER_ONLY_RULE = """
import os
import time
from pathlib import Path

import numpy as np

from amsweep.pipeline.model import Model, Param

HERE = Path(__file__).resolve()
if os.environ.get("AMSWEEP_TEST_DRIVER_SIDE") != "1":  # in a Ray worker
    if str(HERE).startswith(DRIVER_FOLDER):
        raise ImportError(f"imported from the driver's folder {HERE} on a worker")
    import ray

    node = ray.get_runtime_context().get_node_id()
    Path(MARKERS, f"{node}-{os.getpid()}").write_text(str(HERE))

PARAMS = {"scale": Param(1.0, float, "factor on the Hebb couplings", low=0.0, open_low=True)}


def train(X, q, params, rng):
    time.sleep(0.3)  # long enough that the head alone cannot take every batch
    Xf = np.asarray(X, dtype=np.float32)
    J = (Xf.T @ Xf) * np.float32(params["scale"] / Xf.shape[1])
    np.fill_diagonal(J, 0.0)
    return Model(q=2, J=J)
"""
PLUGIN_SPEC = """
name = "driver_only"
seeds = 4
noise = [0.0, 0.1]
P_test = 4
[retrieval]
train_starts = 3
test_starts = 2
random_starts = 2
[datasets.random]
N = [32]
P = [3, 4]
[rules.driver_only]
scale = 2.0
"""


def test_a_plugin_on_the_driver_only_is_shipped_and_runs_on_both_nodes(tmp_path, two_node_cluster, monkeypatch):
    """The plug-in folder is on the driver's AMSWEEP_PLUGIN_PATH only: the rule refuses to import from
    it in a Ray worker (as on a node without that folder), and records each worker's node and the
    file it was imported from. Workers on both nodes import the copy Ray shipped; cells equal serial."""
    from amsweep.pipeline import registry

    address, env, _ = two_node_cluster
    folder, markers = tmp_path / "driver-plugins", tmp_path / "markers"
    markers.mkdir()
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "driver_only.py").write_text(
        DRIVER_ONLY_RULE.replace("DRIVER_FOLDER", repr(str(folder.resolve()))).replace("MARKERS", repr(str(markers)))
    )
    spec_path = tmp_path / "driver_only.toml"
    spec_path.write_text(PLUGIN_SPEC)
    out = str(tmp_path / "driver_only.zarr")
    driver_env = {**env, registry.ENV_VAR: str(folder), "AMSWEEP_TEST_DRIVER_SIDE": "1"}
    cmd = [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec_path), "--out", out, "--address", address]
    done = subprocess.run(
        cmd + ["--cells-per-task", "1", "--quiet"], env=driver_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (Cube.open(out).status() == DONE).all()
    imported = {p.name.split("-")[0]: p.read_text() for p in markers.iterdir()}
    assert len(imported) == 2, imported  # workers of both nodes ran the plug-in
    assert not any(path.startswith(str(folder.resolve())) for path in imported.values()), imported
    monkeypatch.setenv("AMSWEEP_TEST_DRIVER_SIDE", "1")
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    registry.clear()
    try:
        reference = str(tmp_path / "serial.zarr")
        run(Cube.create_or_open(reference, spec_mod.load(spec_path)), SerialExecutor(), progress=False)
        hashes = registry.code_hashes([("rules", "driver_only")])
    finally:
        registry.clear()
    assert_same_cube(out, reference)
    assert list(hashes) == ["amsweep_plugins.rules.driver_only"]
    assert Cube.open(out).attrs["plugins"] == hashes  # the driver recorded the code the workers ran


def test_sweep_completes_after_the_worker_node_dies(tmp_path, two_node_cluster):
    address, env, worker = two_node_cluster
    spec_path = tmp_path / "cluster.toml"
    spec_path.write_text(CLUSTER_SPEC)
    out = str(tmp_path / "cluster.zarr")
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amsweep.sweeps.cli",
            "run",
            str(spec_path),
            "--out",
            out,
            "--address",
            address,
            "--quiet",
        ],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    where = driver.stdout.readline()  # printed once connected
    assert where.startswith(f"Ray cluster at {address} (from --address): 2 node(s), 2 CPU(s)"), where
    first = where + driver.stdout.readline()  # printed once the spec is valid and the cube is open
    assert "task(s) to run" in first, first
    # Kill once the first results are flushed (16 of 40 tasks, ~0.35 s each): both nodes are busy
    # then, and the head alone still has seconds of work left. A fixed sleep raced with fast runs.
    wait_for_first_flush(driver, out)
    assert driver.poll() is None, "the sweep finished before the worker node could be killed"
    kill_node(worker)
    text, _ = driver.communicate(timeout=600)
    text = first + text
    assert driver.returncode == 0, text
    sweep = spec_mod.load(spec_path)
    assert (Cube.open(out).status() == DONE).all()
    reference = str(tmp_path / "serial.zarr")
    run(Cube.create_or_open(reference, sweep), SerialExecutor(), progress=False)
    assert_same_cube(out, reference)
