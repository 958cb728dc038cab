"""Wakes the threads waiting for a message or an event when one arrives in this process."""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterator

Key = tuple[str, str]  # (workflow id, "msg:" + topic or "event:" + key)


class Notifier:
    """Wakes waiters of a (workflow id, topic or event key) when something arrives for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[Key, set[threading.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def waiting(self, key: Key) -> Iterator[threading.Event]:
        """An event set whenever something arrives for `key`, while in the block."""
        event = threading.Event()
        with self._lock:
            self._waiters[key].add(event)
        try:
            yield event
        finally:
            with self._lock:
                self._waiters[key].discard(event)
                if not self._waiters[key]:
                    del self._waiters[key]

    def notify(self, key: Key) -> None:
        with self._lock:
            for event in self._waiters.get(key, ()):
                event.set()
