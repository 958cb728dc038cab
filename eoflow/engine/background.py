"""The engine's background helpers (retention, the request poller, schedules, the Kafka
watchdog) each run one daemon thread until the engine stops them: their start and stop."""

from __future__ import annotations

import threading


class Background:
    """A daemon thread running `_run` until `stop()`; `_run` watches `self._stop`."""

    join_timeout = 5.0  # how long stop() waits for the thread to finish its current pass

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.join_timeout)

    def _run(self) -> None:
        raise NotImplementedError
