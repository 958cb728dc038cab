"""Time, injected: the engine reads time and waits only through a Clock, so tests need no sleeps."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Wakeup(Protocol):
    """What cuts a wait short: a threading.Event or an eoflow Latch."""

    def wait(self, timeout: float | None = None) -> bool: ...
    def is_set(self) -> bool: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time in integer milliseconds since the epoch (what the journal stores)."""

    def wait(self, seconds: float, wakeup: Wakeup) -> bool:
        """Wait `seconds`, or less if `wakeup` is set; True if woken early."""


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def wait(self, seconds: float, wakeup: Wakeup) -> bool:
        return wakeup.wait(max(0.0, seconds))


class FakeClock:
    """A clock for tests: time moves only when waited on or advanced; waits return at once."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += int(seconds * 1000)

    def wait(self, seconds: float, wakeup: Wakeup) -> bool:
        self.waits.append(seconds)
        if wakeup.is_set():
            return True
        self.advance(seconds)
        return False


class ManualClock:
    """A clock for tests where time moves only when the test advances it, and a wait blocks
    (in real time) until the clock reaches its end or its wakeup is set. Unlike FakeClock,
    whose waits return at once, it tells a thread that sleeps from a thread that is free."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._changed = threading.Condition()

    def now_ms(self) -> int:
        with self._changed:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._now += int(seconds * 1000)
            self._changed.notify_all()

    def wait(self, seconds: float, wakeup: Wakeup) -> bool:
        with self._changed:
            end = self._now + int(seconds * 1000)
            while not wakeup.is_set() and self._now < end:
                self._changed.wait(0.01)  # the wakeup is another object: look again soon
            return wakeup.is_set()
