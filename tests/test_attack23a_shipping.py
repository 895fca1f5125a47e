"""attack23a (adversarial review of issue 23): odd files in a plug-in folder shipped to Ray.

The Ray executor copies and hashes each whole ``AMSWEEP_PLUGIN_PATH`` folder before ``ray.init``
(``plugin_shipping.stage``), reading every file, whatever it is. Files a user's tools leave there
break it: an editor's lock file (Emacs writes ``.#name`` as a dangling symlink while a buffer is
modified) makes ``amsweep run --executor ray`` print a traceback and "this is a bug in amsweep";
a named pipe makes it hang for ever, before anything says what it is doing. Found at 36a0080,
fixed (fix23a): such files are skipped in discovery and shipping. The first test runs a Ray sweep.

A plug-in folder larger than Ray's package limit (gRPC's message size, 512 MiB by default; a
data file beside a dataset plug-in) fails in ``ray.init``'s upload: a traceback and "this is a bug
in amsweep", ending in Ray's advice to list the file in ``.rayignore``, which cannot work here:
the staged copy drops ``.gitignore``/``.rayignore`` on purpose. The test lowers Ray's limit to
4 MiB (``RAY_max_grpc_message_size``) and ships 6 MB; it starts a local Ray (~16 s here). Fixed
(fix23a): Ray's size error becomes one PluginError line naming the largest files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from amsweep.pipeline import plugin_shipping, registry
from amsweep.pipeline.errors import PluginError
from amsweep.sweeps.cli import main

RULE = """
from amsweep.pipeline.rules import hebb as _hebb

PARAMS = {}


def train(X, q, params, rng):
    return _hebb.train(X, q, params, rng)
"""
SPEC = (
    'name = "q"\nseeds = 1\nnoise = [0.0]\nP_test = 4\n'
    "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
    "[datasets.random]\nN = [32]\nP = [3]\n[rules.toy]\n"
)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    (plugins / "rules").mkdir(parents=True)
    (plugins / "rules" / "toy.py").write_text(RULE)
    (plugins / "notes").mkdir()
    monkeypatch.setenv(registry.ENV_VAR, str(plugins))
    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))
    registry.clear()
    yield plugins
    registry.clear()


def staged_or_refused(folder: Path, seconds: float = 5.0) -> str:
    """What ``stage`` does with the folder within ``seconds``: "staged", "refused" (one-line
    PluginError), "hung", or the unexpected exception."""
    said: list[str] = []

    def go() -> None:
        try:
            staged = plugin_shipping.stage((folder,))
            assert staged is not None
            staged.remove()
            said.append("staged")
        except PluginError:
            said.append("refused")
        except Exception as e:  # what a user would see as a traceback
            said.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=go, daemon=True)  # a hung read blocks its thread, not the test run
    t.start()
    t.join(seconds)
    return said[0] if said else "hung"


def test_a_dangling_symlink_in_a_plugin_folder_is_skipped_or_refused_in_one_line(folder, tmp_path, capsys):
    os.symlink("user@host.4242:1765000000", folder / "notes" / ".#todo.md")  # what Emacs leaves
    spec = tmp_path / "q.toml"
    spec.write_text(SPEC)
    assert staged_or_refused(folder) in ("staged", "refused")
    code = main(["run", str(spec), "--out", str(tmp_path / "c.zarr"), "--executor", "ray", "--quiet"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and "bug in amsweep" not in err, err


def test_a_named_pipe_in_a_plugin_folder_does_not_hang_the_start(folder):
    pipe = folder / "notes" / "pipe"
    os.mkfifo(pipe)
    try:
        assert staged_or_refused(folder) in ("staged", "refused")
    finally:  # a reader blocked on the pipe gets end-of-file, so no thread outlives the test
        try:
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader left


def test_an_editor_lock_file_beside_a_plugin_does_not_refuse_the_run(folder, tmp_path, capsys):
    os.symlink("user@host.4242:1765000000", folder / "rules" / ".#toy.py")
    spec = tmp_path / "q.toml"
    spec.write_text(SPEC)
    code = main(["run", str(spec), "--out", str(tmp_path / "c.zarr"), "--executor", "serial", "--quiet"])
    assert code == 0, capsys.readouterr().err


def test_a_plugin_folder_too_large_for_ray_is_refused_in_one_line(folder, tmp_path):
    (folder / "data").mkdir()
    (folder / "data" / "weights.bin").write_bytes(os.urandom(6_000_000))  # incompressible
    (folder / ".rayignore").write_text("data/\n")  # what Ray's message says to do
    spec = tmp_path / "q.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "RAY_max_grpc_message_size": str(4 * 2**20), "HOME": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", str(tmp_path / "c.zarr")]
        + ["--executor", "ray", "--workers", "1", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 2), done.stderr
    assert "Traceback" not in done.stderr and "bug in amsweep" not in done.stderr, done.stderr[-2000:]
