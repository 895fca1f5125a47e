"""attack23a (adversarial review of issue 23): a Slurm job stopped with SIGTERM.

``amsweep slurm`` stops its driver gracefully (as Ctrl-C: finished results written, the lease
released, the run recorded as ended) only on the USR1 it asks for before the time limit. Slurm's
preemption (PreemptMode=REQUEUE/CANCEL), ``scancel`` and ``scontrol requeue`` send SIGTERM to every
process of the job, the driver included, and amsweep has no SIGTERM handler: the driver dies at
once, the cells finished since the last flush (up to ``flush_seconds`` = 10 s of work) are lost,
the lease stays held (a requeue on another node waits it out, ~75 s) and the run history says
"running" for ever. Found at 36a0080 (measured: 41 cells flushed, 3 s more work lost, lease held,
history ``ending: running``); strict xfail for the lead, ~6 s, serial executor.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


from amsweep.storage import lease
from amsweep.storage.objects import objects_at
from tests.conftest import wait_for_first_flush

SPEC = """
name = "t"
root_seed = 1
seeds = 400  # long enough to be mid-run when the signal lands, on a fast machine too
noise = [0.0, 0.2]
P_test = 10
[retrieval]
train_starts = 20
test_starts = 10
random_starts = 5
[datasets.random]
N = [64, 96]
alpha = [0.05, 0.1, 0.2, 0.3]
[rules.hebb]
[rules.plm]
epochs = 60
"""


def test_sigterm_stops_the_driver_as_ctrl_c_does(tmp_path):
    spec, out = tmp_path / "t.toml", tmp_path / "t.zarr"
    spec.write_text(SPEC)
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", str(out), "--executor", "serial"]
        + ["--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_first_flush(proc, str(out))
    time.sleep(1.0)  # cells finished after the first flush, not yet written
    assert proc.poll() is None, "the sweep ended before it could be stopped: make it longer"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != -signal.SIGTERM, "killed by SIGTERM: no flush, no lease release"
    record = lease.holder_of(objects_at(str(out)))
    assert record is None or record.get("released"), record
    [last] = sorted(Path(out, "_amsweep", "runs").glob("*.json"))[-1:]
    assert json.loads(last.read_text())["ending"] != "running"
