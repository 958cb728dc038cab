"""The retention window at work: a background thread that forgets old finished runs.

It runs a prune pass (journal/retention.py says what goes and what never does) every tenth of
the window, at least every second and at most every minute. Each batch is one short write on
the journal's writer, between the engine's own writes: the longest batch is kept in
`longest_batch_ms`, which is how long the pruner held the writer at most.
"""

from __future__ import annotations

import logging
import threading

from eoflow.engine.background import Background
from eoflow.engine.backoff import Backoff
from eoflow.engine.runtime import Runtime
from eoflow.errors import JournalError
from eoflow.journal.retention import PruneReport

log = logging.getLogger("eoflow.engine")


def prune(rt: Runtime, older_than: float, stop: threading.Event | None = None) -> PruneReport:
    """One pass: forget what finished more than `older_than` seconds ago; returns the total."""
    total = PruneReport()
    cutoff = rt.clock.now_ms() - int(older_than * 1000)
    for report in rt.journal.prune(cutoff, rt.txstore):
        total.add(report)
        if stop is not None and stop.is_set():
            break
    return total


class Pruner(Background):
    def __init__(self, rt: Runtime, window: float) -> None:
        super().__init__("eoflow-retention")
        self._rt = rt
        self.window = window
        self.interval = min(60.0, max(1.0, window / 10))
        self.longest_batch_ms = 0.0
        self.removed = PruneReport()

    def _run(self) -> None:
        retries = Backoff()
        while not self._stop.is_set():
            try:
                report = prune(self._rt, self.window, self._stop)
            except JournalError as error:
                delay = retries.next()
                log.warning("retention: could not prune the journal (%s); retrying in %.1fs",
                            error, delay)
                self._stop.wait(delay)
                continue
            except Exception:  # never let the pruner die silently; it tries again later
                log.exception("retention: unexpected error while pruning")
                self._stop.wait(self.interval)
                continue
            retries.reset()
            self.removed.add(report)
            self.longest_batch_ms = self.removed.longest_batch_ms
            if report.removed:
                log.info("retention: removed %d run(s), %d step(s), %d Kafka key(s) finished "
                         "over %s ago (longest batch %.1f ms)", report.runs, report.steps,
                         report.kafka_keys, _human(self.window), report.longest_batch_ms)
            self._stop.wait(self.interval)


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
