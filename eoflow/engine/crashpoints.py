"""Crash injection: kill this process with SIGKILL at a named journal boundary.

Set `EOFLOW_CRASH_AT=POINT` (or `POINT:N` for the N-th time the point is reached, counting from
1) in the environment of a process running an engine; `eoflow.testing.crash_env` builds it. The
check costs one attribute lookup when unset. Points, in the order a run meets them:

    after_start       the workflow's start record is durable
    before_step       a step is about to run (nothing of it recorded)
    in_transaction    a @transaction's SQL ran, its commit has not happened
    after_step        a step's (or transaction's) record is durable
    before_outcome    the workflow returned, its outcome is not recorded
    after_outcome     the workflow's outcome is durable
    kafka_recorded    a polled batch is durable in the journal, offsets not committed to Kafka
    kafka_committed   offsets of a batch are committed to Kafka
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = (
    "after_start", "before_step", "in_transaction", "after_step", "before_outcome",
    "after_outcome", "kafka_recorded", "kafka_committed",
)


class _Rule:
    def __init__(self, spec: str) -> None:
        point, _, nth = spec.partition(":")
        if point not in POINTS:
            raise ValueError(f"EOFLOW_CRASH_AT: unknown point {point!r}; one of {POINTS}")
        self.point = point
        self.remaining = int(nth) if nth else 1
        self.lock = threading.Lock()


_spec = os.environ.get("EOFLOW_CRASH_AT")
_rule = _Rule(_spec) if _spec else None


def hit(point: str) -> None:
    """Reached `point`: die here if this is the configured crash."""
    if _rule is None or _rule.point != point:
        return
    with _rule.lock:
        _rule.remaining -= 1
        if _rule.remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
