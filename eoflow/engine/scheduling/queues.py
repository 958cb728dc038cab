"""Durable queues: runs recorded as ENQUEUED, started in order within a queue's limits.

    orders = eoflow.Queue("orders", concurrency=4, rate_limit=(100, 60.0), priority=True)
    handle = orders.enqueue(process, order, dedup_id=order["id"], priority=1, delay=30)

An enqueued run is durable before enqueue() returns. The engine's dispatcher moves ready runs
from ENQUEUED to PENDING (one journal transaction) and hands them to the worker pool; from then
on they are ordinary runs, resumed by recovery after a crash. Limits count the queue's PENDING
runs, and the runs it dequeued within the rate limit's period, in the journal, in the
transaction that dequeues: they hold across restarts and across engines. (The dispatcher's
own window of recent starts only decides when to look again.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eoflow.engine import runner, starts
from eoflow.engine.context import (
    active_runtime,
    current_run,
    new_workflow_id,
    take_workflow_id,
)
from eoflow.engine.executor import encode_inputs
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.registry import (
    REGISTRY,
    Definition,
    DictStore,
    definition_of,
    require_workflow,
)
from eoflow.engine.runtime import Runtime
from eoflow.errors import ConfigError, NoEngineError
from eoflow.journal.records import Status

log = logging.getLogger("eoflow.engine")
_QUEUES: DictStore[Queue] = DictStore()  # every Queue declared in the process, by name


@dataclass(frozen=True)
class Queue:
    """A named queue of workflow runs. `concurrency`: at most this many PENDING at once;
    `rate_limit=(n, seconds)`: at most n started per period; `priority`: honour the
    `priority=` of enqueue (lower first) before arrival order."""

    name: str
    concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None
    priority: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("Queue", "a queue needs a non-empty name")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"Queue {self.name!r}", "concurrency must be at least 1")
        if self.rate_limit is not None:
            limit, period = self.rate_limit
            if limit < 1 or period <= 0:
                raise ConfigError(f"Queue {self.name!r}",
                                  "rate_limit must be (runs >= 1, seconds > 0)")
        with _QUEUES.lock:
            known = _QUEUES.items.get(self.name)
            if known is not None and known != self:
                raise ConfigError(f"Queue {self.name!r}",
                                  "declared twice with different settings")
            _QUEUES.items[self.name] = self

    def enqueue(self, fn: Callable[..., Any], *args: Any, dedup_id: str | None = None,
                priority: int | None = None, delay: float | None = None,
                **kwargs: Any) -> WorkflowHandle:
        """Record a run of workflow `fn` in this queue (durably) and return its handle.
        A `dedup_id` refuses a second live (ENQUEUED or PENDING) run with that id."""
        runtime = active_runtime()
        if runtime is None:
            raise NoEngineError(getattr(fn, "__qualname__", repr(fn)))
        if delay is not None and delay < 0:
            raise ConfigError("enqueue", f"delay must be >= 0 seconds, got {delay}")
        runtime.check_open()
        definition = require_workflow(definition_of(fn))
        return enqueue_run(runtime, self, definition, args, kwargs, dedup_id, priority, delay)


def queue_named(name: str) -> Queue | None:
    return _QUEUES.get(name)


class Dispatcher:
    """Starts the ready runs of every declared queue, within its limits, in queue order."""

    POLL = 1.0  # seconds between passes when nothing wakes the dispatcher

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._wake = rt.queue_wakeup
        rt.queues_declared = lambda: bool(_QUEUES.items)
        self._stopped = False
        self._started: dict[str, deque[float]] = {}
        self._thread = threading.Thread(target=self._run, name="eoflow-queues", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.clear()
            try:
                pause = self._dispatch()
            except Exception as error:  # the journal may be closing or failing: try later
                if self._stopped:
                    return
                log.warning("queues: dispatch failed (%s); retrying", error)
                pause = self.POLL
            if pause > 0:  # real time: an idle dispatcher must not advance a test's fake clock
                self._wake.wait(pause)

    def _dispatch(self) -> float:
        """One pass over all queues; returns how long to wait before the next pass."""
        queues = _QUEUES.values()
        pause = self.POLL
        for queue in queues:
            pause = min(pause, self._dispatch_one(queue))
        return pause

    def _dispatch_one(self, queue: Queue) -> float:
        journal, now = self._rt.journal, self._rt.clock.now_ms()
        capacity = 10_000  # the concurrency limit is the journal's to keep (across engines)
        pause = self.POLL
        window = self._started.setdefault(queue.name, deque())
        if queue.rate_limit is not None:
            limit, period = queue.rate_limit
            moment = time.monotonic()
            while window and moment - window[0] >= period:
                window.popleft()
            capacity = min(capacity, limit - len(window))
            if window and len(window) >= limit:
                pause = min(pause, period - (moment - window[0]))
        if capacity <= 0:
            return max(pause, 0.001)
        rate = None if queue.rate_limit is None else \
            (queue.rate_limit[0], int(queue.rate_limit[1] * 1000))
        tel = self._rt.telemetry
        for workflow_id, name, ready_ms in journal.dequeue(
                queue.name, now, queue.priority, capacity, queue.concurrency, rate):
            if tel is not None:
                tel.queue_waited(queue.name, max(0, now - ready_ms) / 1000)
            definition = REGISTRY.workflow(name)
            if definition is None:
                log.error("queue %s: no workflow named %r in this app; run %s stays PENDING",
                          queue.name, name, workflow_id)
                continue
            window.append(time.monotonic())
            run = self._rt.runs.track(workflow_id)
            runner.submit(self._rt, run, definition, None)
        due = journal.queue_next_due(queue.name, now)
        if due is not None:
            pause = min(pause, max(0.001, (due - now) / 1000))
        return pause


def enqueue_run(rt: Runtime, queue: Queue, definition: Definition, args: tuple[Any, ...],
                kwargs: dict[str, Any], dedup_id: str | None, priority: int | None,
                delay: float | None) -> WorkflowHandle:
    """Record a run as ENQUEUED in `queue`; from inside a workflow it is a child with a
    deterministic id. Returns its handle once the record is durable."""
    now = rt.clock.now_ms()
    fields: dict[str, Any] = dict(
        status=Status.ENQUEUED, queue=queue.name, priority=priority or 0, dedup_id=dedup_id,
        not_before_ms=now + int(delay * 1000) if delay else None)
    parent = current_run.get()
    if parent is not None and parent.runtime is rt:
        wid, _, status, _ = starts.create_child(parent, definition, args, kwargs, **fields)
    else:
        wid = take_workflow_id() or new_workflow_id()
        new = starts.new_run(rt, definition, wid, encode_inputs(definition.name, args, kwargs),
                             now, **fields)
        _, status = starts.create_runs(rt, [new], [definition])[0]
    rt.queue_wakeup.set()
    if status.terminal:  # this id already ran: its handle reads the journal
        return WorkflowHandle(rt, wid)
    return WorkflowHandle(rt, wid, rt.runs.track(wid))
