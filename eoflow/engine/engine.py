"""The Engine: all runtime state of eoflow, explicitly created and closed.

Opening an engine takes ownership of the journal, migrates it, and resumes every PENDING run
from its last recorded step. Workflows started with `start` run on a bounded worker pool; a
workflow called directly runs durably in the caller's thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from eoflow.engine import crashpoints, operations, recovery
from eoflow.engine.clock import Clock, SystemClock
from eoflow.engine.config import EngineConfig
from eoflow.engine.context import (
    active_engine,
    current_run,
    engine_closed,
    engine_opened,
    entered,
    new_workflow_id,
    take_workflow_id,
)
from eoflow.engine.handle import WorkflowHandle, recorded_outcome
from eoflow.engine.pool import WorkerPool
from eoflow.engine.primitives import Notifier
from eoflow.engine.queues import Dispatcher, Queue, enqueue_run
from eoflow.engine.registry import Definition, Kind, definition_of
from eoflow.engine.runs import ActiveRun, Runner, encode_inputs
from eoflow.engine.timers import Timers
from eoflow.errors import (
    ContextError,
    DefinitionError,
    EngineClosedError,
    WorkflowConflictError,
    WorkflowNotFoundError,
)
from eoflow.journal.appdb import AppDatabase
from eoflow.journal.interface import Journal, TxStore
from eoflow.journal.records import NewWorkflow, Status, StepRecord
from eoflow.journal.sqlite import SQLiteJournal

log = logging.getLogger("eoflow.engine")


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
    ) -> None:
        self.config = EngineConfig.resolve(journal, app_db, workers, durability, grace_period,
                                           brokers)
        self.path = self.config.journal
        self.clock: Clock = clock or SystemClock()
        self.journal: Journal = SQLiteJournal.open(self.path, self.config.durability)
        self._app_db: AppDatabase | None = None
        try:
            if self.config.app_db:
                self._app_db = AppDatabase.open(self.config.app_db, self.config.durability)
        except BaseException:
            self.journal.close()
            raise
        self.txstore: TxStore = self._app_db.tx if self._app_db else self.journal.tx
        self.pool = WorkerPool(self.config.workers)
        self.runner = Runner(self)
        self.notifier = Notifier()
        self.timers = Timers(self.clock)
        self.queues = Dispatcher(self)
        self._closed = False
        self._close_lock = threading.Lock()
        self._stop = threading.Event()
        self._services: list[Any] = []  # things with .stop(): Kafka consumers, pollers
        engine_opened(self)
        log.info("engine opened journal %s", self.path)
        if recover:
            self.recover()
            self._apply_requests()  # left by the CLI while no engine ran
        self._poller = threading.Thread(target=self._poll_requests, name="eoflow-requests",
                                        daemon=True)
        self._poller.start()

    # -- lifecycle ------------------------------------------------------------------------------

    @staticmethod
    def current() -> Engine:
        """The engine running this code (inside a workflow, a `with engine:` block, or the one
        open engine of the process, as under `eoflow run`)."""
        engine = active_engine()
        if engine is None:
            raise ContextError("no eoflow engine is running here")
        return engine

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Engine:
        self._entered = entered(self)
        self._entered.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._entered.__exit__(kind, error, tb)
        self.close()

    def add_service(self, service: Any) -> None:
        """Stop `service` (anything with .stop()) when the engine closes, before its workers."""
        self._services.append(service)

    def close(self, grace_period: float | None = None) -> None:
        """Stop taking work, stop running workflows at their next step boundary (waiting up to
        the grace period), and close the journal. Unfinished runs stay PENDING for next time."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        grace = self.config.grace_period if grace_period is None else grace_period
        self._stop.set()
        for service in reversed(self._services):
            service.stop()
        self.runner.stop_all("shutdown")
        if not self.pool.shutdown(grace):
            log.warning("engine: some workflows did not reach a step boundary within %.1fs; "
                        "they stay PENDING and resume on the next start", grace)
        self._poller.join(timeout=2)
        self.timers.stop()
        self.queues.stop()
        self.journal.close()
        if self._app_db is not None:
            self._app_db.close()
        engine_closed(self)
        log.info("engine closed journal %s", self.path)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(self.path)

    # -- starting and calling workflows ------------------------------------------------------

    def start(self, fn: Callable[..., Any], *args: Any, workflow_id: str | None = None,
              **kwargs: Any) -> WorkflowHandle:
        """Record a new run durably and run it on the worker pool; returns its handle at once.

        Starting an id that exists returns that run's handle and never runs it twice."""
        definition = self._workflow(fn)
        parent = current_run.get()
        if parent is not None and parent.engine is self and workflow_id is None:
            return self._start_child(parent, definition, args, kwargs)
        wid = workflow_id or take_workflow_id() or new_workflow_id()
        return self._launch([(definition, wid, args, kwargs)])[0]

    def _start_child(self, parent: Any, definition: Definition, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> WorkflowHandle:
        """start() from inside a workflow: a child with a deterministic id, recorded as a step
        of the parent, so that replay returns a handle on the same child."""
        from eoflow.engine.decorators import create_child

        child_id, created, status, new = create_child(parent, definition, args, kwargs)
        return self._run_created(definition, child_id, new, created, status, (args, kwargs))

    def start_many(self, fn: Callable[..., Any], calls: Iterable[Sequence[Any]],
                   ) -> list[WorkflowHandle]:
        """Start one run per argument tuple in `calls`, recorded in one durable transaction."""
        definition = self._workflow(fn)
        return self._launch([(definition, new_workflow_id(), tuple(c), {}) for c in calls])

    def enqueue(self, queue: Queue, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any], dedup_id: str | None = None,
                priority: int | None = None, delay: float | None = None) -> WorkflowHandle:
        """Record a run of `fn` as ENQUEUED in `queue`, durably (see queues.py)."""
        self._check_open()
        return enqueue_run(self, queue, self._workflow(fn), args, kwargs, dedup_id, priority,
                           delay)

    def run(self, fn: Callable[..., Any], *args: Any, workflow_id: str | None = None,
            **kwargs: Any) -> Any:
        """Run a workflow durably in this thread and return its result."""
        definition = self._workflow(fn)
        wid = workflow_id or take_workflow_id() or new_workflow_id()
        return self.call(definition, wid, args, kwargs)

    def call(self, definition: Definition, wid: str, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        """Create (or find) run `wid` and execute it in this thread unless it runs elsewhere."""
        self._check_open()
        now = self.clock.now_ms()
        new = NewWorkflow(wid, definition.name, encode_inputs(definition.name, args, kwargs),
                          now, deadline_ms=definition.deadline(now))
        created, status = self.create_runs([new], [definition])[0]
        return self.attach(definition, wid, created, status, new, (args, kwargs))

    def attach(self, definition: Definition, wid: str, created: bool, status: Status,
               new: NewWorkflow | None = None,
               call: tuple[tuple[Any, ...], dict[str, Any]] | None = None) -> Any:
        """Return the result of run `wid`, executing it in this thread if no thread is."""
        if not created and status.terminal:
            return self._recorded(wid)
        run = self.runner.track(wid)
        if self.runner.claim(run):
            if created and new is not None:
                run.call = call
                self.runner.execute(run, definition, new.inputs, {}, new.deadline_ms,
                                    waited=True)
            else:
                self._resume_claimed(run, definition, waited=True)
        run.done.wait()
        return run.outcome()

    def _launch(self, calls: list[tuple[Definition, str, tuple[Any, ...], dict[str, Any]]],
                lane: str | None = None) -> list[WorkflowHandle]:
        self._check_open()
        now = self.clock.now_ms()
        news = [
            NewWorkflow(wid, d.name, encode_inputs(d.name, args, kwargs), now, lane=lane,
                        deadline_ms=d.deadline(now))
            for d, wid, args, kwargs in calls
        ]
        outcomes = self.create_runs(news, [call[0] for call in calls])
        return [self._run_created(definition, wid, new, created, status, (args, kwargs), lane)
                for (definition, wid, args, kwargs), new, (created, status)
                in zip(calls, news, outcomes, strict=True)]

    def _run_created(self, definition: Definition, wid: str, new: NewWorkflow | None,
                     created: bool, status: Status,
                     call: tuple[tuple[Any, ...], dict[str, Any]],
                     lane: str | None = None) -> WorkflowHandle:
        """After a start was recorded: queue the run on the pool unless it already finished;
        a fresh run gets the caller's arguments as they are."""
        if not created and status.terminal:
            return WorkflowHandle(self, wid)
        run = self.runner.track(wid)
        if created:
            run.call = call
        self.submit_run(run, definition, new if created else None, lane)
        return WorkflowHandle(self, wid, run)

    def create_runs(self, news: list[NewWorkflow], definitions: list[Definition],
                    step: StepRecord | None = None) -> list[tuple[bool, Status]]:
        """Record runs durably (with a parent's CHILD `step`, if any): (created?, status) of
        each. An existing id of another workflow is a WorkflowConflictError."""
        results = self.journal.create_workflows(news, self.clock.now_ms(), step)
        out = []
        rows = zip(news, definitions, results, strict=True)
        for new, definition, (created, name, status) in rows:
            if not created and name != definition.name:
                raise WorkflowConflictError(new.workflow_id, name, definition.name)
            out.append((created, status))
        if any(created for created, _ in out):
            crashpoints.hit("after_start")
        return out

    def submit_run(self, run: ActiveRun, definition: Definition, new: NewWorkflow | None,
                   lane: str | None = None, on_done: Callable[[], None] | None = None) -> None:
        """Queue a run on the pool. `new`: it was just created (nothing to replay)."""

        def task() -> None:
            try:
                if not self.runner.claim(run):
                    return  # another thread ran it (a parent running its child inline)
                if new is not None:
                    self.runner.execute(run, definition, new.inputs, {}, new.deadline_ms)
                else:
                    self._resume_claimed(run, definition)
            finally:
                if on_done is not None:
                    on_done()

        self.pool.submit(task, lane=lane)

    def _resume_claimed(self, run: ActiveRun, definition: Definition,
                        waited: bool = False) -> None:
        """Execute a claimed run that already has a journal: replay its recorded steps."""
        record = self.journal.get_workflow(run.workflow_id)
        if record is None:
            self.runner.finish(run, Status.ERROR, None, WorkflowNotFoundError(run.workflow_id))
            return
        if record.status is Status.ENQUEUED:
            self.runner.unclaim(run)  # its queue's dispatcher starts it
            return
        if record.status is not Status.PENDING:  # it finished meanwhile: report that
            try:
                value, error = recorded_outcome(record), None
            except Exception as failure:
                value, error = None, failure
            self.runner.finish(run, record.status, value, error)
            return
        steps = self.journal.load_steps(run.workflow_id)
        self.runner.execute(run, definition, record.inputs, steps, record.deadline_ms, waited)

    def _recorded(self, wid: str) -> Any:
        record = self.journal.get_workflow(wid)
        assert record is not None
        return recorded_outcome(record)

    @staticmethod
    def _workflow(fn: Callable[..., Any] | Definition) -> Definition:
        definition = fn if isinstance(fn, Definition) else definition_of(fn)
        if definition.kind is not Kind.WORKFLOW:
            raise DefinitionError(definition.name, f"is a {definition.kind.value}, not a workflow")
        return definition

    def retrieve(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing run (raises WorkflowNotFoundError when there is none)."""
        handle = WorkflowHandle(self, workflow_id, self.runner.get(workflow_id))
        handle.status()
        return handle

    # -- recovery ----------------------------------------------------------------------------

    def recover(self) -> list[WorkflowHandle]:
        """Resume every PENDING run from its last recorded step; park crash-looping ones."""
        return recovery.recover(self)

    def _poll_requests(self) -> None:
        """Apply cancel/resume requests written by `eoflow workflows ...` while we run."""
        while not self._stop.wait(self.config.request_poll):
            try:
                self._apply_requests()
            except Exception as error:  # keep polling; the journal may recover
                if not self._closed:
                    log.warning("engine: could not read operator requests: %s", error)

    def _apply_requests(self) -> None:
        if self.journal.has_requests():
            for _, wid, action in self.journal.take_requests():
                operations.apply_request(self, wid, action)

    # -- Kafka --------------------------------------------------------------------------------

    def consume(self, *handlers: Callable[..., Any], brokers: str | list[str] | None = None
                ) -> list[Any]:
        """Start a consumer loop for each given @kafka_consume handler (default: all that are
        registered); they stop when the engine closes. Brokers: `brokers`, else the engine's
        (--brokers, EOFLOW_KAFKA_BROKERS), else the handler's @kafka class, else
        localhost:9092."""
        from eoflow.engine.consumer import start_consumers

        self._check_open()
        return start_consumers(self, [definition_of(h) for h in handlers], brokers)

    def schedule(self, *workflows: Callable[..., Any]) -> Any:
        """Start running the given @scheduled workflows (default: all) on time, until the
        engine closes. Missed times are handled by each schedule's `missed` policy."""
        from eoflow.engine.schedules import SCHEDULES, Scheduler

        self._check_open()
        wanted = [definition_of(w) for w in workflows]
        chosen = [s for s in SCHEDULES
                  if not wanted or any(s.definition is d for d in wanted)]
        if not chosen:
            return None
        scheduler = Scheduler(self, chosen)
        self.add_service(scheduler)
        scheduler.start()
        return scheduler

    def retry_quarantined(self, key: str) -> bool:
        """Apply a quarantined Kafka message again, exactly once (see consumer.py)."""
        from eoflow.engine.consumer import retry_quarantined

        return retry_quarantined(self, key)

    # -- operator actions (see operations.py) -------------------------------------------------

    def cancel(self, workflow_id: str) -> None:
        """Cancel a run; it stops at its next step boundary and can be resumed."""
        operations.cancel(self, workflow_id)

    def resume(self, workflow_id: str) -> WorkflowHandle:
        """Resume a cancelled or parked run from its last recorded step."""
        return operations.resume(self, workflow_id)

    def fork(self, workflow_id: str, from_step: int, new_id: str | None = None
             ) -> WorkflowHandle:
        """Start a new run reusing `workflow_id`'s recorded steps before `from_step`."""
        return operations.fork(self, workflow_id, from_step, new_id)
