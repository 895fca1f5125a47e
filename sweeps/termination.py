"""SIGTERM stops a run the way Ctrl-C does: finished results are flushed and the run says so.

Slurm ends a job step with SIGTERM (preemption, the time limit, ``scancel``), as do ``ray job stop``,
``kill`` and container runtimes; before this, SIGTERM killed a serial driver outright (its buffer of
up to ``flush_seconds`` of finished cells lost, its history record left saying "running") and Ray's
driver handler turned it into ``sys.exit``, recorded as a failure. While a run is under way the
handler raises ``KeyboardInterrupt`` in the main thread, so the driver loop's Ctrl-C path (final
flush, ending "interrupted") handles both; a second SIGTERM during that flush interrupts only the
flush (its tasks stay pending), as a second Ctrl-C does. The previous handler (Ray's, or the
default) is restored when the run ends. ``amsweep``'s ``main`` holds it for the whole command too, so a
SIGTERM just after the run (while the lease is released) or before it (while Ray starts) is also an
interrupt, never a death that leaves the lease held.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["sigterm_as_interrupt"]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only: Python delivers
    signals there, and ``signal.signal`` refuses other threads, e.g. a notebook's worker thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
