"""A cube stand-in that keeps only the status grid in memory: fan-out measured without writes.

The format-1 cube writes ~26 ms per cell on local disk, which alone caps a sweep near 40
cells/s; format 2 (the lead's issue) targets >= 5,000 cells/s. Until it lands, the scale
benchmark measures the fan-out (spec -> lazy pending -> batches -> Ray -> outcomes -> the
runner's buffer and flushes) into this sink, and reports the real cube's write rate beside it.
It offers the Cube API the runner uses: ``sweep``, ``pending``, ``count_pending``, ``write``,
``status``, ``ensure_writable``; the run record goes to ``path`` on disk as usual.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from pipeline.spec import Sweep, Task
from storage.layout import DONE, FAILED, PENDING


class SinkCube:
    """Status in memory (int8, one byte per cell: 1 MB for 10^6 cells), values counted, not kept."""

    def __init__(self, path: str, sweep: Sweep) -> None:
        self.path, self.sweep, self.storage_options = path, sweep, None
        self._status = np.zeros(sweep.shape, dtype=np.int8)
        self.written = 0
        self.flushes = 0

    def ensure_writable(self) -> None:
        """Nothing to probe: writes go to memory."""

    def status(self) -> np.ndarray:
        return self._status

    def pending(self, retry_failed: bool = True) -> Iterator[Task]:
        todo = (PENDING, FAILED) if retry_failed else (PENDING,)
        status = self._status
        return (t for t in self.sweep.tasks() if status[t.index] in todo)

    def count_pending(self, retry_failed: bool = True) -> int:
        return int(np.isin(self._status, [PENDING, FAILED] if retry_failed else [PENDING]).sum())

    def write(self, results: list, marks: list = ()) -> None:
        for r in results:
            self._status[r.index] = DONE
        for index, state, _ in marks:
            self._status[index] = state
        self.written += len(results)
        self.flushes += 1
