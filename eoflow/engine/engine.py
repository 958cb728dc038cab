"""The Engine: the public face of eoflow's runtime, explicitly created and closed.

Opening an engine takes ownership of the journal, migrates it, and resumes every PENDING run
from its last recorded step. Workflows started with `start` run on a bounded worker pool; a
workflow called directly runs durably in the caller's thread. The Engine only holds the user
API: the resources live in a `Runtime` (runtime.py), which is what every part below receives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from eoflow.engine import operations, recovery, retention, starts
from eoflow.engine.clock import Clock, SystemClock
from eoflow.engine.config import EngineConfig, parse_duration
from eoflow.engine.context import (
    active_runtime,
    entered,
    new_workflow_id,
    runtime_closed,
    runtime_opened,
    take_workflow_id,
)
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.kafka.consumer import ConsumerLoop
from eoflow.engine.kafka.quarantine import retry_quarantined
from eoflow.engine.kafka.start import start_consumers
from eoflow.engine.lease import Heartbeat, LeaseKeeper
from eoflow.engine.operations import RequestPoller
from eoflow.engine.registry import Definition, definition_of, require_workflow
from eoflow.engine.retention import Pruner
from eoflow.engine.runtime import Runtime
from eoflow.engine.scheduling.queues import Dispatcher, Queue, enqueue_run
from eoflow.engine.scheduling.schedules import SCHEDULES, Scheduler
from eoflow.errors import ContextError, ExecutorFencedError
from eoflow.journal.interface import Journal
from eoflow.journal.retention import PruneReport
from eoflow.journal.urls import redact

log = logging.getLogger("eoflow.engine")
_FACADES: dict[int, Engine] = {}  # id(runtime) -> its engine, for Engine.current()


class Engine:
    """Runs workflows durably against one journal file. Use as a context manager."""

    def __init__(
        self,
        journal: str | os.PathLike[str] | None = None,
        app_db: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        durability: str | None = None,
        *,
        grace_period: float | None = None,
        brokers: str | list[str] | None = None,
        clock: Clock | None = None,
        recover: bool = True,
        retention: str | float | None = None,
        lease: str | float | None = None,
        app_version: str | None = None,
    ) -> None:
        self.config = EngineConfig.resolve(journal, app_db, workers, durability, grace_period,
                                           brokers, retention, lease=lease,
                                           app_version=app_version)
        self.fenced: ExecutorFencedError | None = None
        self.path = redact(self.config.journal)
        self._entered: list[contextlib.AbstractContextManager[None]] = []
        # Start-up takes its resources under one ExitStack: if any step fails (recovery
        # included), everything taken so far is released and nothing stays registered.
        with contextlib.ExitStack() as stack:
            runtime = self.runtime = Runtime.open(self.config, clock or SystemClock())
            stack.callback(runtime.close, 0.0)
            runtime_opened(runtime)
            stack.callback(runtime_closed, runtime)
            _FACADES[id(runtime)] = self  # before recovery: recovered runs may ask for it
            stack.callback(_FACADES.pop, id(runtime), None)
            # tests stop the dispatcher to fill a queue before anything starts
            dispatcher = self.queues = Dispatcher(runtime)
            runtime.add_service(dispatcher)
            dispatcher.start()
            requests = RequestPoller(runtime)
            runtime.add_service(requests)
            runtime.journal.set_fenced_callback(self._fenced)
            heartbeat = Heartbeat(runtime)  # before the takeover, which may wait long
            runtime.add_service(heartbeat)
            heartbeat.start()
            if recover:
                recovery.recover(runtime)
                requests.apply_pending()  # left by the CLI while no engine ran
            requests.start()
            if recover:  # take others' runs over, and runs a Client started
                keeper = LeaseKeeper(runtime)
                runtime.add_service(keeper)
                keeper.start()
            window = self.config.retention
            runtime.journal.set_retention(None if window is None else int(window * 1000))
            self.pruner = None if window is None else Pruner(runtime, window)
            if self.pruner is not None:
                runtime.add_service(self.pruner)
                self.pruner.start()
            stack.pop_all()
        log.info("engine opened journal %s", self.path)

    # -- lifecycle ------------------------------------------------------------------------------

    def _fenced(self, error: ExecutorFencedError) -> None:
        """Another executor took this one's runs over: stop (from another thread: this is the
        journal's writer calling). `eoflow run` then exits with the error."""
        self.fenced = error
        threading.Thread(target=self.close, args=(0.0,), name="eoflow-fenced",
                         daemon=True).start()

    @staticmethod
    def current() -> Engine:
        """The engine running this code (inside a workflow, a `with engine:` block, or the one
        open engine of the process, as under `eoflow run`)."""
        runtime = active_runtime()
        engine = None if runtime is None else _FACADES.get(id(runtime))
        if engine is None:
            raise ContextError("no eoflow engine is running here")
        return engine

    @property
    def app_version(self) -> str:
        """The version of the app's code this engine runs, which the runs it starts record:
        `app_version=` as given, or a hash of the registered functions' code (versions.py)."""
        version = self.runtime.journal.app_version
        assert version is not None, "registered at start"
        return version

    @property
    def closed(self) -> bool:
        return self.runtime.closed

    @property
    def journal(self) -> Journal:
        """The journal this engine owns (for reading; the engine does the writing)."""
        return self.runtime.journal

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    def __enter__(self) -> Engine:
        block = entered(self.runtime)
        block.__enter__()
        self._entered.append(block)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._entered.pop().__exit__(kind, error, tb)
        self.close()

    def close(self, grace_period: float | None = None) -> None:
        """Stop taking work, stop running workflows at their next step boundary (waiting up to
        the grace period), and close the journal. Unfinished runs stay PENDING for next time."""
        if self.runtime.closed:
            return
        grace = self.config.grace_period if grace_period is None else grace_period
        try:
            self.runtime.close(grace)
        finally:
            runtime_closed(self.runtime)
            _FACADES.pop(id(self.runtime), None)
        log.info("engine closed journal %s", self.path)

    def prune(self, older_than: str | float) -> PruneReport:
        """Forget, now, the finished runs (and Kafka keys, and retried quarantine entries) that
        finished more than `older_than` ago (seconds, or a duration such as "7d"); what may
        never go stays (see `eoflow journal prune`). Returns what was removed."""
        self.runtime.check_open()
        return retention.prune(self.runtime, parse_duration("older_than", older_than))

    # -- starting and calling workflows ------------------------------------------------------

    def start(self, fn: Callable[..., Any], *args: Any, workflow_id: str | None = None,
              **kwargs: Any) -> WorkflowHandle:
        """Record a new run durably and run it on the worker pool; returns its handle at once.

        Starting an id that exists returns that run's handle and never runs it twice."""
        self.runtime.check_open()
        return starts.start(self.runtime, _workflow(fn), args, kwargs, workflow_id)

    def start_many(self, fn: Callable[..., Any], calls: Iterable[Sequence[Any]],
                   ) -> list[WorkflowHandle]:
        """Start one run per argument tuple in `calls`, recorded in one durable transaction."""
        definition = _workflow(fn)
        return starts.launch(self.runtime, [(definition, new_workflow_id(), tuple(c), {})
                                            for c in calls])

    def enqueue(self, queue: Queue, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any], dedup_id: str | None = None,
                priority: int | None = None, delay: float | None = None) -> WorkflowHandle:
        """Record a run of `fn` as ENQUEUED in `queue`, durably (see scheduling/queues.py)."""
        self.runtime.check_open()
        return enqueue_run(self.runtime, queue, _workflow(fn), args, kwargs, dedup_id,
                           priority, delay)

    def run(self, fn: Callable[..., Any], *args: Any, workflow_id: str | None = None,
            **kwargs: Any) -> Any:
        """Run a workflow durably in this thread and return its result."""
        definition = _workflow(fn)
        wid = workflow_id or take_workflow_id() or new_workflow_id()
        return starts.call(self.runtime, definition, wid, args, kwargs)

    def retrieve(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing run (raises WorkflowNotFoundError when there is none)."""
        handle = WorkflowHandle(self.runtime, workflow_id, self.runtime.runs.get(workflow_id))
        handle.status()
        return handle

    def recover(self) -> list[WorkflowHandle]:
        """Resume every PENDING run from its last recorded step; park crash-looping ones."""
        return recovery.recover(self.runtime)

    # -- Kafka and schedules ------------------------------------------------------------------

    def consume(self, *handlers: Callable[..., Any], brokers: str | list[str] | None = None
                ) -> list[ConsumerLoop]:
        """Start a consumer loop for each given @kafka_consume handler (default: all that are
        registered); they stop when the engine closes. Brokers: `brokers`, else the engine's
        (--brokers, EOFLOW_KAFKA_BROKERS), else the handler's @kafka class, else
        localhost:9092."""
        self.runtime.check_open()
        return start_consumers(self.runtime, [definition_of(h) for h in handlers], brokers)

    def schedule(self, *workflows: Callable[..., Any]) -> Scheduler | None:
        """Start running the given @scheduled workflows (default: all) on time, until the
        engine closes. Missed times are handled by each schedule's `missed` policy."""
        self.runtime.check_open()
        wanted = [definition_of(w) for w in workflows]
        chosen = [s for s in SCHEDULES.values()
                  if not wanted or any(s.definition is d for d in wanted)]
        if not chosen:
            return None
        scheduler = Scheduler(self.runtime, chosen)
        self.runtime.add_service(scheduler)
        scheduler.start()
        return scheduler

    def retry_quarantined(self, key: str) -> bool:
        """Apply a quarantined Kafka message again, exactly once (see kafka/consumer.py)."""
        return retry_quarantined(self.runtime, key)

    # -- operator actions (one implementation each, shared with the CLI) ------------------------

    def cancel(self, workflow_id: str) -> None:
        """Cancel a run; it stops at its next step boundary and can be resumed."""
        operations.cancel(self.runtime, workflow_id)

    def resume(self, workflow_id: str) -> WorkflowHandle:
        """Resume a cancelled or parked run from its last recorded step."""
        return operations.resume(self.runtime, workflow_id)

    def fork(self, workflow_id: str, from_step: int, new_id: str | None = None
             ) -> WorkflowHandle:
        """Start a new run reusing `workflow_id`'s recorded steps before `from_step`."""
        return operations.fork(self.runtime, workflow_id, from_step, new_id)


def _workflow(fn: Callable[..., Any] | Definition) -> Definition:
    return require_workflow(fn if isinstance(fn, Definition) else definition_of(fn))
