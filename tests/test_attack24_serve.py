"""attack24 (issue 24, serve): findings as strict xfails. No browser: the server's own start is the finding."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest

from amsweep.pipeline.cell import run_cell
from amsweep.storage.cube import Cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    from amsweep.pipeline import spec as spec_mod
    from tests.conftest import SMALL

    sweep = spec_mod.from_dict(copy.deepcopy(SMALL))
    path = str(tmp_path_factory.mktemp("a24s") / "cube.zarr")
    with Cube.create_or_open(path, sweep) as c:
        c.write([run_cell(sweep.job(t)) for t in sweep.tasks()])
    return path


def test_serve_on_the_ipv6_loopback_starts_and_prints_a_usable_url(cube):
    """serve.py treats '::1' as loopback and binds AF_INET6 for it, but the websocket origins it
    builds are 'HOST:PORT' ('::1:41234'), which Bokeh refuses (ValueError: Invalid host value): a
    traceback called a bug. A started server prints http://[::1]:PORT/ (a URL a browser takes)."""
    cmd = [sys.executable, "-m", "amsweep.sweeps.cli", "serve", cube, "--host", "::1", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, deadline = "", time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:  # exited
                break
            out += line
            if line.startswith("serving"):
                break
        if "cannot listen there" in out:
            pytest.skip("no IPv6 loopback on this machine")
        assert "bug in amsweep" not in out and "Traceback" not in out, out
        assert "http://[::1]:" in out, out
    finally:
        proc.kill()
        proc.wait()
