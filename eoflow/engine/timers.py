"""Timers: run an action at a wall-clock time (ms), on the engine's injected clock.

Used to wake sleeping workflows and delayed queue runs without holding a worker thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from eoflow.engine.clock import Clock

log = logging.getLogger("eoflow.engine")


class Timers:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="eoflow-timers", daemon=True)
        self._thread.start()

    def at(self, due_ms: int, action: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._heap, (due_ms, next(self._order), action))
        self._changed.set()

    def stop(self) -> None:
        self._stopped = True
        self._changed.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped:
            self._changed.clear()
            with self._lock:
                due = self._heap[0][0] if self._heap else None
            if due is None:
                self._changed.wait()
                continue
            delay = (due - self._clock.now_ms()) / 1000
            if delay > 0:
                self._clock.wait(delay, self._changed)
                continue
            with self._lock:
                _, _, action = heapq.heappop(self._heap)
            try:
                action()
            except Exception:
                log.exception("engine: a timer action failed")
