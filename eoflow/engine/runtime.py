"""The Runtime: every resource an engine holds, taken at start under one ExitStack.

The public `Engine` is a facade over this object. Everything below the facade (the runner,
recovery, operator actions, queues, schedules, Kafka consumers) receives the Runtime, or a
narrower part of it, and never the facade. Opening takes the journal (its owner lock, its
connections), the application database, the worker pool and the timer thread in that order;
a failure at any point releases whatever was already taken, and `close` releases all of it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from eoflow.engine.active import ActiveRuns, StopReason
from eoflow.engine.clock import Clock
from eoflow.engine.config import EngineConfig
from eoflow.engine.heldlanes import HeldLanes
from eoflow.engine.notifier import Notifier
from eoflow.engine.pool import WorkerPool
from eoflow.engine.registry import REGISTRY
from eoflow.engine.telemetry import load as load_telemetry
from eoflow.engine.timers import Timers
from eoflow.engine.versions import code_version
from eoflow.errors import EngineClosedError
from eoflow.journal.appdb import AppDatabase
from eoflow.journal.interface import Journal, TxStore
from eoflow.journal.opening import open_journal
from eoflow.journal.urls import redact

if TYPE_CHECKING:
    from eoflow.engine.otel import Telemetry

log = logging.getLogger("eoflow.engine")


class Service(Protocol):
    """A background part started on a runtime (a consumer loop, a scheduler, the queue
    dispatcher, the request poller): stopped when the runtime closes, before its workers."""

    def stop(self) -> None: ...


class Runtime:
    """The resources of one open engine. Build with `Runtime.open`; close exactly once."""

    def __init__(self, config: EngineConfig, clock: Clock, journal: Journal, txstore: TxStore,
                 pool: WorkerPool, timers: Timers, resources: contextlib.ExitStack,
                 telemetry: Telemetry | None = None) -> None:
        self.config = config
        self.path = redact(config.journal)  # for messages: a URL's password is never shown
        self.clock = clock
        self.journal = journal
        self.txstore = txstore  # where @transaction functions run: the journal or the app db
        self.pool = pool
        self.timers = timers
        self.telemetry = telemetry  # None: no OpenTelemetry here (engine/telemetry.py)
        self.notifier = Notifier()
        self.runs = ActiveRuns()
        self.queue_wakeup = threading.Event()  # set when a queue slot may have opened
        self.queues_declared: Callable[[], bool] = lambda: True  # the dispatcher's
        # Held by a takeover from its claim until it has queued the runs it claimed, and by a
        # Kafka lane gate while it counts a lane's runs held elsewhere (kafka/lanes.py).
        self.lanes_lock = threading.Lock()
        # Runs taken over that wait for older runs of their lane held elsewhere.
        self.held_lanes = HeldLanes(journal, pool, timers, clock, self.lanes_lock,
                                    lambda: self._closed)
        self._resources = resources
        self._services: list[Service] = []
        self._closed = False
        self._close_lock = threading.Lock()

    def slot_opened(self) -> None:
        """A run of this engine ended: a queue slot may have opened. The queue dispatcher is
        woken only if a queue is declared and it is not awake already: woken at every end,
        it cost a Kafka workflow run most of a thread switch (0.67 a run, ordered)."""
        if not self.queue_wakeup.is_set() and self.queues_declared():
            self.queue_wakeup.set()

    @classmethod
    def open(cls, config: EngineConfig, clock: Clock) -> Runtime:
        with contextlib.ExitStack() as stack:
            journal = open_journal(config.journal, config.durability)
            stack.callback(journal.close)
            version = config.app_version or code_version(REGISTRY.functions())
            executor_id = journal.register_executor(int(config.lease * 1000), clock.now_ms(),
                                                    version)
            txstore = journal.tx
            if config.app_db:
                app_db = AppDatabase.open(config.app_db, config.durability)
                stack.callback(app_db.close)
                txstore = app_db.tx
                txstore.name_session(executor_id)  # see recovery.take_over
            pool = WorkerPool(config.workers)
            stack.callback(pool.shutdown, 0.0)
            timers = Timers(clock)
            stack.callback(timers.stop)
            telemetry = load_telemetry()
            if telemetry is not None:
                journal.set_commit_observer(telemetry.commit_observer)
                stack.callback(telemetry.watch(depth=journal.queue_depths,
                                               journal=redact(config.journal)))
            runtime = cls(config, clock, journal, txstore, pool, timers, stack.pop_all(),
                          telemetry)
        return runtime

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(self.path)

    def _hand_over(self) -> None:
        """Leave this executor's PENDING runs unowned: another executor (or the next start)
        takes them at once, instead of after the lease."""
        try:
            handed = self.journal.stop_executor(self.clock.now_ms())
        except Exception as error:  # fenced, or the journal is failing: the lease decides
            log.warning("engine: could not hand its runs over (%s); other executors take "
                        "them after its lease (%gs)", error, self.config.lease)
            return
        if handed:
            log.info("engine: handed %d pending workflow(s) over to the other executors",
                     handed)

    def add_service(self, service: Service) -> None:
        """Stop `service` when the runtime closes, before its workers (last added, first)."""
        self._services.append(service)

    def close(self, grace: float) -> None:
        """Stop the services, ask running workflows to stop at their next step boundary (up to
        `grace` seconds), and release every resource. Unfinished runs stay PENDING."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            for service in reversed(self._services):
                try:
                    service.stop()
                except Exception:
                    log.exception("engine: a service failed to stop")
            self.runs.stop_all(StopReason.SHUTDOWN, EngineClosedError(self.path))
            if self.pool.shutdown(grace):
                self._hand_over()
            else:  # still running here: handing them over would run them twice at once
                log.warning("engine: some workflows did not reach a step boundary within "
                            "%.1fs; they stay PENDING, and another engine takes them once "
                            "this process has exited (or the next start does)", grace)
        finally:
            self._resources.close()
