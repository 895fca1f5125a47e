"""A private local Ray that starts light and early (issue 26, "Ray pays off on 2 cores", third pass).

``ray_local.light_node`` leaves out the API server and starts the dashboard agent minimal;
``ray_executor.prestart`` starts the node on a background thread from ``launch`` while the driver
imports its cell code, and the executor adopts it. These tests hold the levers to this Ray release
(a release without them would start the heavy node again, silently) and run one sweep through a
prestarted Ray in a fresh process (the test session's own Ray would make ``prestart`` stand aside).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from amsweep.pipeline import ray_executor


def test_light_node_levers_hold_for_this_ray_and_are_restored():
    import ray

    from amsweep.pipeline import ray_local

    api, deps = ray._private.node.Node.start_api_server, ray._private.utils.get_dashboard_dependency_error
    with ray_local.light_node(ray) as held:
        assert held == {"no_api_server": True, "minimal_agent": True}, "this Ray lacks a lever: the node starts heavy"
        assert ray._private.node.Node.start_api_server is not api
        assert ray._private.utils.get_dashboard_dependency_error() is not None  # the agent is started --minimal
    assert ray._private.node.Node.start_api_server is api
    assert ray._private.utils.get_dashboard_dependency_error is deps


def test_prestart_stands_aside_where_it_must(monkeypatch, tmp_path):
    """A cluster to join, a Ray job, plug-in folders to upload: the executor starts (or joins) as before."""
    assert not ray_executor.prestart({"address": "127.0.0.1:1"})
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert not ray_executor.prestart({})
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("AMSWEEP_PLUGIN_PATH", str(tmp_path))
    assert not ray_executor.prestart({})
    assert not ray_executor._prestarted


SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading
    import ray
    from amsweep.pipeline import ray_executor
    from amsweep.sweeps.launch import launch, to_sweep
    from amsweep.storage.cube import Cube

    out = {}
    started = []
    real = ray_executor.prestart
    ray_executor.prestart = lambda options: started.append(real(options)) or started[-1]
    spec, root = sys.argv[1], sys.argv[2]
    summary = launch(to_sweep(spec), root + "/ray.zarr", "ray", {"workers": 2})
    out["prestarted"] = list(started)
    out["done"] = summary.done
    out["where"] = summary.where["executor"]
    out["after_run"] = ray.is_initialized()
    launch(to_sweep(spec), root + "/serial.zarr", "serial", {})
    for name in ("ray", "serial"):
        cube = Cube.open(root + "/" + name + ".zarr")
        out[name] = {v: cube.read_variable(v)[0].tolist() for v in ("status", "m_train")}
    # the pins reach the workers through the raylet's environment, never the driver's (attack26c)
    pins = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    executor = ray_executor.RayExecutor(workers=1)

    @ray.remote
    def worker_pins():
        import os

        import numpy  # noqa: F401  (its OpenBLAS, loaded in the worker)
        from threadpoolctl import threadpool_info

        return [os.environ.get(k) for k in pins], sorted({i["num_threads"] for i in threadpool_info()})

    out["worker_pins"] = ray.get(worker_pins.remote())
    out["driver_pins"] = [os.environ.get(k) for k in pins]
    executor.shutdown()
    assert ray_executor.prestart({"workers": 1})  # then nobody adopts it
    ray_executor.abandon_prestart()
    out["after_abandon"] = ray.is_initialized()
    for t in threading.enumerate():
        if t.name == "amsweep-ray-start":
            t.join(5)
    out["threads_left"] = [t.name for t in threading.enumerate() if t.name == "amsweep-ray-start"]
    print("RESULT" + json.dumps(out))
    """
)


def test_a_prestarted_local_ray_runs_the_sweep_as_serial_does_and_stops(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'name = "tiny"\nroot_seed = 3\nseeds = 2\nnoise = [0.0, 0.2]\nP_test = 8\n'
        "[retrieval]\ntrain_starts = 8\ntest_starts = 8\nrandom_starts = 4\n"
        "[datasets.random]\nN = [24]\nalpha = [0.1, 0.3]\n[rules.hebb]\n[rules.plm]\nepochs = 5\n"
    )
    unpinned = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(spec), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=unpinned,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    assert out["prestarted"] == [True], "launch started the local Ray early"
    assert out["where"] == "ray" and out["done"] == 8
    assert not out["after_run"], "the executor that adopted it shut it down"
    for name in ("status", "m_train"):
        np.testing.assert_array_equal(np.array(out["ray"][name]), np.array(out["serial"][name]))
    assert not out["after_abandon"] and not out["threads_left"], "an unadopted Ray is stopped, its thread ended"
    assert out["worker_pins"] == [["1", "1", "1", "1"], [1]], "a worker's BLAS and numba threads are pinned"
    assert out["driver_pins"] == [None] * 4, "the driver's own environment is left as it was"


HOLD = textwrap.dedent(
    """
    import json, os, signal, time
    from amsweep.pipeline import ray_local

    ray_local.init = lambda ray, kwargs, pins: time.sleep(0.5) or True  # a ray.init that takes 0.5 s
    out = {}
    before = signal.getsignal(signal.SIGINT)
    starting = ray_local.Starting({}, {})
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while Ray starts (and the main thread imports)
        for _ in range(20):
            time.sleep(0.01)  # bytecode boundaries where a Python handler would have raised
        out["raised_at_once"] = False
    except KeyboardInterrupt:
        out["raised_at_once"] = True
    try:
        starting.result()
        out["raised_by_result"] = False
    except KeyboardInterrupt:
        out["raised_by_result"] = True
    out["handler_restored"] = signal.getsignal(signal.SIGINT) is before
    out["started"] = starting.started
    starting.release()
    print("RESULT" + json.dumps(out))
    """
)


def test_ctrl_c_while_ray_starts_is_held_until_result():
    """A Ctrl-C raised in the main thread inside importlib's lock bookkeeping left the global
    import lock held, and the starter thread, importing inside ``ray.init``, waited forever (a Ctrl-C
    0.6 s into ``amsweep run --executor ray`` hung it): ``Starting`` holds the signal until ``result``."""
    proc = subprocess.run([sys.executable, "-c", HOLD], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))[len("RESULT") :])
    assert out == {"raised_at_once": False, "raised_by_result": True, "handler_restored": True, "started": True}
