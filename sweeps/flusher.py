"""Cube flushes on a background thread, so result collection never waits on storage.

Issue 26 measured the driver blocked ~330 us per cell on S3 while a flush wrote: with the
writes inline, a 1,000-core cluster's results queued behind the store. ``Flusher`` runs the
flushes the runner hands it one after another on one thread, in the order handed (a later
flush's status never lands before an earlier one's data), through a queue of at most ``depth``
flushes: a caller that finds it full waits (back-pressure), so a slow store bounds memory
instead of growing it. The first flush that raises stops the writing: the flushes queued after
it are dropped unwritten (their tasks stay pending; the next run recomputes them, as after a
crash) and the error is raised, once, in the caller's thread on its next ``put``, ``wait`` or
``close``: a store error or a lost lease ends the run exactly as an inline flush did, with no
retry. ``abandon`` drops what is queued and lets only the flush under way finish (a second
Ctrl-C): a thread cannot be interrupted mid-write, and the cube's write order makes a flush
that finishes safe.

Nothing the caller's thread does is counted: whether flushes are still to be written is read from
the queue itself and the thread's busy flag, both changed under the queue's lock by the writer
thread alone. A Ctrl-C lands between any two bytecodes of the caller's thread, inside ``put``
included; a count kept there was left one off by one landing just after the flush went in, and
the run's final ``wait`` then never returned (tests/test_attack26_driver.py).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

__all__ = ["Flusher"]

_STOP = None  # the sentinel that ends the thread


class Flusher:
    """One writer thread running flushes (zero-argument callables) in order, ``depth`` queued at most.

    The queue is a deque under one Condition that every change notifies (a flush queued or taken,
    the thread idle again): what the caller and the thread rely on, and the lock they hold for it,
    are this class's own, not a ``queue.Queue``'s internals."""

    def __init__(self, depth: int = 2, name: str = "amsweep-flusher") -> None:
        self._depth = max(1, depth)
        self._flushes: deque[Callable[[], None] | None] = deque()
        self._changed = threading.Condition()  # guards _flushes, _busy and _last
        self._error: BaseException | None = None
        self._raised = False
        self._abandoned = threading.Event()
        self._busy = False  # the thread holds a flush it took (under way or being dropped)
        self._last: Callable[[], None] | None = None  # the last flush the thread took
        self.written = 0  # flushes that completed
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _push(self, flush: Callable[[], None] | None) -> None:
        """Queue ``flush`` once there is room (the stop sentinel too). Notified before the append,
        in one hold of the lock: a Ctrl-C between the two leaves the flush out, and the woken
        thread finds nothing new and waits again; once appended, ``holds`` sees it."""
        with self._changed:
            while len(self._flushes) >= self._depth:
                self._changed.wait()
            self._changed.notify_all()
            self._flushes.append(flush)

    def _take(self) -> Callable[[], None] | None:
        """The next flush, marked busy in the same hold of the lock that removes it."""
        with self._changed:
            while not self._flushes:
                self._changed.wait()
            flush = self._flushes.popleft()
            if flush is not _STOP:
                self._busy, self._last = True, flush
            self._changed.notify_all()  # room for a waiting put
        return flush

    def _work(self) -> None:
        while True:
            flush = self._take()
            if flush is _STOP:
                return
            try:
                if self._error is None and not self._abandoned.is_set():
                    flush()
                    self.written += 1
            except BaseException as e:  # raised in the caller's thread; the flushes after it are dropped
                self._error = e
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    @property
    def error(self) -> BaseException | None:
        """The first failed flush's error (the writing has stopped), None while every flush landed."""
        return self._error

    def full(self) -> bool:
        """True when a ``put`` would wait: the caller may keep buffering into a larger flush instead."""
        with self._changed:
            return len(self._flushes) >= self._depth

    def pending(self) -> int:
        """Flushes handed over and not yet written (the one under way included)."""
        with self._changed:
            return len(self._flushes) + self._busy

    def holds(self, flush: Callable[[], None]) -> bool:
        """True once ``flush`` went into the queue (queued, under way, written or dropped): a caller
        whose ``put`` was interrupted learns whether the flush went in (only the latest put is known
        once taken)."""
        with self._changed:
            return self._last is flush or any(f is flush for f in self._flushes)

    def put(self, flush: Callable[[], None]) -> None:
        """Queue a flush after those already queued; waits while the queue is full. Raises the
        error of an earlier flush instead of queueing after it."""
        self.check()
        self._push(flush)

    def check(self) -> None:
        """Raise the first failed flush's error (once: the runner then records how the run ended)."""
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def wait(self) -> None:
        """Until every flush handed over is written (or dropped after an error), then ``check``."""
        with self._changed:
            while (self._flushes or self._busy) and self._thread.is_alive():
                self._changed.wait(0.1)  # a timeout keeps Ctrl-C deliverable to the waiting thread
        self.check()

    def abandon(self) -> None:
        """Drop every queued flush not yet begun; the one under way finishes (see the module note)."""
        self._abandoned.set()

    def close(self) -> None:
        """Stop the thread once the flushes handed over are written or dropped (no error raised: call
        ``wait`` for that). Closing twice is harmless."""
        if self._thread.is_alive():
            self._push(_STOP)
            self._thread.join()
