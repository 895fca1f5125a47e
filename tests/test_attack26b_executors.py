"""Attack 26b on the optional ``map_blocks`` result path (issue 26, columnar).

The runner now prefers an executor's ``map_blocks`` over ``map_unordered``. ``SerialExecutor``'s
``map_blocks`` goes through ``map_unordered`` so that a subclass overriding it keeps its behaviour
("subclasses' included"); ``RayExecutor.map_blocks`` does not: a plug-in executor subclassing
RayExecutor (the pattern tests/test_attack3_plugins.py shows) that overrides ``map_unordered`` to
audit, log or rewrite outcomes is silently bypassed since 9af42d6, while the same override of a
SerialExecutor is honoured. Fixed (fixc): RayExecutor.map_blocks goes through such an override, one
block per cell (``outcomes.cell_blocks``, the wrapper SerialExecutor and the runner's fallback use).
"""

from __future__ import annotations

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import RayExecutor, SerialExecutor
from amsweep.storage.cube import Cube
from amsweep.sweeps.runner import run
from tests.conftest import SMALL


def _fake_cell(job):
    """Every declared metric from the task's index alone (no training: cheap); the second seed fails."""
    import numpy as np

    from amsweep.pipeline.metric_table import METRICS
    from amsweep.pipeline.outcomes import CellResult

    if job.task.index[4] == 1:
        raise ValueError("boom")
    x = np.float32(sum(job.task.index))
    return CellResult(job.task.index, {k: np.full(len(job.noise), x) if m.per_noise else x for k, m in METRICS.items()})


def _audited(base):
    class Audited(base):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.seen = 0

        def map_unordered(self, fn, jobs, total=None):
            for job, outcome in super().map_unordered(fn, jobs, total):
                self.seen += 1  # e.g. an audit log, a per-outcome check
                yield job, outcome

    return Audited


def test_a_serial_subclass_overriding_map_unordered_is_honoured(tmp_path):
    sweep = spec_mod.from_dict(SMALL)
    executor = _audited(SerialExecutor)()
    report = run(Cube.create_or_open(str(tmp_path / "s.zarr"), sweep), executor, progress=False, cell=_fake_cell)
    assert executor.seen == report.done + report.failed > 0


def test_a_ray_subclass_overriding_map_unordered_is_honoured(tmp_path, ray_local):
    sweep = spec_mod.from_dict(SMALL)
    executor = _audited(RayExecutor)(cells_per_task=2)
    try:
        report = run(Cube.create_or_open(str(tmp_path / "r.zarr"), sweep), executor, progress=False, cell=_fake_cell)
    finally:
        executor.shutdown()
    assert report.done + report.failed > 0
    assert executor.seen == report.done + report.failed, f"map_unordered saw {executor.seen} outcomes"
