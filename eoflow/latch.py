"""Latch: a one-shot event built on a bare lock, much cheaper than threading.Event.

The engine creates one per write and per run, and sets each exactly once; threading.Event's
Condition machinery (a Python-level waiter list, a lock per waiter) showed up as a large share
of the engine's CPU time under concurrency.
"""

from __future__ import annotations

import _thread


class Latch:
    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        """Idempotent, and safe from several threads at once (a run can be stopped by a cancel
        and by the engine's shutdown together): the GIL does not switch threads between the
        check and the release, as there is no call between them."""
        if not self._set:
            self._set = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set (or `timeout` seconds pass); True if set. Any number may wait:
        each waiter passes the lock on to the next."""
        if self._set:
            return True
        if self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._lock.release()
            return True
        return self._set
