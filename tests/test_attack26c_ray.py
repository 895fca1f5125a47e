"""attack26c (adversarial review of issue 26's third Ray pass): the prestarted, light local Ray.

``launch`` now calls ``ray_executor.prestart`` (a ``ray_local.Starting`` thread runs ``ray.init``
while the driver imports its cell code) and ``RayExecutor`` adopts what it started. Two defects,
each shown in a fresh Python process (the Python API, as a notebook uses it; a Ray already running
in the test session would make ``prestart`` stand aside):

- ``launch`` calls ``prestart`` *before* its ``try: ... finally: abandon_prestart()``, and
  ``prestart`` waits (``Starting.imported``) ~0.25 s while its thread imports Ray. A Ctrl-C in that
  wait escapes ``amsweep.run`` and leaves the Ray its thread goes on starting initialized in the
  process, with a stale ``_prestarted`` entry; the next ``amsweep.run(..., workers=1)`` then finds
  Ray initialized, takes it as the caller's and runs on its 2 CPUs instead of a private 1-CPU Ray.
  The interrupt is simulated by raising ``KeyboardInterrupt`` from ``Starting.imported`` once the
  thread has imported Ray (where a real SIGINT lands in that wait).
- ``ray_local.Starting`` keeps the thread pins (OPENBLAS_NUM_THREADS=1, ...) in the whole process's
  ``os.environ`` for the ~2 s of ``ray.init``, exactly while the driver imports its cell code. A BLAS
  library loaded in that window reads them: after ``amsweep.run(executor="ray")`` the driver's SciPy
  OpenBLAS has 1 thread (c60c1df: all cores, as in a process that never ran a sweep), so a
  notebook's own ``scipy.linalg`` work afterwards runs single-threaded. ``os.environ`` itself is
  restored; ``pinned_environ`` promises "the driver's own settings are untouched".

A third, older than this pass (c60c1df fails it too): a driver killed (-9) while its local Ray
starts, after Ray's agents are up but before the executor starts ``ray_reaper``, leaves
``ray::DashboardAgent`` / ``ray::RuntimeEnvAgent`` running (seen alive 40 s later). The prestart
moved that window earlier (1.6-3 s into ``amsweep run`` instead of ~3 s); it did not open it.

All three are fixed (they were strict xfails on the merged main): ``prestart`` inside launch's
``try``; the pins reach the raylet as ``RayParams.env_vars``, never the driver's environment; the
reaper starts before ``ray.init`` and finds the driver's GCS and raylet itself (``ray_reaper.ray_roots``),
so the killed-driver test now kills as soon as an agent appears, whenever the reaper started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

TINY = (
    'name = "tiny"\nroot_seed = 3\nseeds = 2\nnoise = [0.0, 0.2]\nP_test = 8\n'
    "[retrieval]\ntrain_starts = 8\ntest_starts = 8\nrandom_starts = 4\n"
    "[datasets.random]\nN = [24]\nalpha = [0.1, 0.3]\n[rules.hebb]\n[rules.plm]\nepochs = 5\n"
)
PINS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINS and k not in ("RAY_ADDRESS", "AMSWEEP_PLUGIN_PATH")}
    env.pop("RAY_JOB_CONFIG_JSON_ENV_VAR", None)
    return env


def _run(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


INTERRUPTED_PRESTART = """
    import json, sys, time
    import ray
    import amsweep
    from amsweep.pipeline import ray_executor, ray_local

    spec, root = sys.argv[1], sys.argv[2]
    real = ray_local.Starting.imported

    def imported(self):
        real(self)
        raise KeyboardInterrupt  # Ctrl-C while launch waits for the thread to import Ray

    ray_local.Starting.imported = imported
    out = {}
    try:
        out["interrupted"] = amsweep.run(spec, root + "/a.zarr", executor="ray", workers=2).interrupted
    except KeyboardInterrupt:
        out["interrupted"] = "escaped"
    ray_local.Starting.imported = real
    deadline = time.time() + 60  # let the thread's ray.init (if it still runs) return
    while time.time() < deadline and any(not s._done.is_set() for s in ray_executor._prestarted.values()):
        time.sleep(0.1)
    time.sleep(0.5)
    out["ray_left_running"] = ray.is_initialized()
    out["stale_prestarts"] = len(ray_executor._prestarted)
    second = amsweep.run(spec, root + "/b.zarr", executor="ray", workers=1)
    out["second_done"] = second.done
    out["second_cpus"] = second.where["cpus"]
    print("RESULT" + json.dumps(out))
"""


def test_ctrl_c_during_the_prestart_wait_leaves_no_ray_running_in_the_process(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = _run(INTERRUPTED_PRESTART, str(spec), str(tmp_path))
    assert out["second_done"] == 8
    assert not out["ray_left_running"], "the interrupted run left a local Ray initialized in this process"
    assert out["stale_prestarts"] == 0, "a prestarted Ray nobody will adopt or stop is still registered"
    assert out["second_cpus"] == 1, "the next run(workers=1) ran on the interrupted run's 2-CPU Ray"


BLAS_AFTER_RUN = """
    import json, sys
    out = {}
    if sys.argv[1] != "-":
        import amsweep

        out["done"] = amsweep.run(sys.argv[1], sys.argv[2] + "/a.zarr", executor="ray", workers=2).done
    import scipy.linalg  # noqa: F401  (loaded already after a run: the cell code imports it)
    from threadpoolctl import threadpool_info

    out["scipy_blas_threads"] = [i["num_threads"] for i in threadpool_info() if "scipy.libs" in i["filepath"]]
    print("RESULT" + json.dumps(out))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a 1-thread BLAS is every process's default on 1 CPU")
def test_a_ray_run_leaves_the_drivers_own_blas_threads_as_they_were(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    fresh = _run(BLAS_AFTER_RUN, "-")
    after = _run(BLAS_AFTER_RUN, str(spec), str(tmp_path))
    assert after["done"] == 8
    assert fresh["scipy_blas_threads"], "SciPy's OpenBLAS not found: nothing to compare"
    assert after["scipy_blas_threads"] == fresh["scipy_blas_threads"], (
        f"SciPy's BLAS threads in the driver after a Ray run {after['scipy_blas_threads']}, "
        f"in a fresh process {fresh['scipy_blas_threads']}: the raylet's pins leaked into the driver"
    )


def _descendants(root: int) -> dict[int, str]:
    parents, names = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    rest = f.read().rsplit(b")", 1)[1].split()
                if rest[0] == b"Z":
                    continue
                parents[int(entry)] = int(rest[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    names[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in out:
                out[child] = names.get(child, "")
                todo.append(child)
    return out


def test_a_driver_killed_while_its_local_ray_starts_leaves_no_ray_process(tmp_path):
    import signal
    import time

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", str(tmp_path / "c.zarr"), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_clean_env(),
    )
    seen: dict[int, str] = {}
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            now = _descendants(proc.pid)
            seen.update(now)
            if any(name.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")) for name in now.values()):
                break
            time.sleep(0.02)
        else:
            pytest.skip("no dashboard agent seen before the run ended")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    settle = time.time() + 20  # the killed-driver test of test_fanout waits as long
    alive = seen
    while time.time() < settle:
        now = {pid for pid in seen if os.path.exists(f"/proc/{pid}")}
        alive = {pid: seen[pid] for pid in now if _descendant_alive(pid)}
        if not alive:
            break
        time.sleep(0.5)
    for pid in alive:  # leave nothing behind for the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not alive, f"left running after the driver was killed: {sorted(n[:60] for n in alive.values())}"


def _descendant_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
