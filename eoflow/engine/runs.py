"""Runs in this process: who executes each workflow run, and how its outcome reaches waiters.

A run is *claimed* by exactly one thread (a pool worker, a direct caller, or a parent workflow
running its child inline); any other thread that wants its result waits on the same ActiveRun.
Claiming happens when execution begins, never at submission, so a parent can always run a child
that is still queued instead of waiting for a worker that may never come.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from eoflow.engine import crashpoints
from eoflow.engine.context import Interrupted, RunContext, current_run
from eoflow.engine.executor import encode_value
from eoflow.engine.primitives import Suspended
from eoflow.engine.registry import Definition
from eoflow.errors import EngineClosedError, WorkflowCancelledError
from eoflow.journal import codec
from eoflow.journal.records import Status, StepRecord
from eoflow.latch import Latch

if TYPE_CHECKING:
    from eoflow.engine.engine import Engine

log = logging.getLogger("eoflow.engine")


class ActiveRun:
    """A run known to this process: queued, running, or just finished."""

    __slots__ = ("workflow_id", "claimed", "context", "done", "status", "value", "error", "call")

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        # The caller's (args, kwargs) of a run just created here: its first execution uses them
        # instead of decoding the journaled inputs (which replay uses, and which equal them).
        self.call: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.claimed = False
        self.context: RunContext | None = None
        self.done = Latch()
        self.status: Status = Status.PENDING
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, status: Status, value: Any, error: BaseException | None) -> None:
        self.status, self.value, self.error = status, value, error
        self.done.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class Runner:
    """Executes workflow bodies for one engine and tracks its active runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._active: dict[str, ActiveRun] = {}

    def get(self, workflow_id: str) -> ActiveRun | None:
        with self._lock:
            return self._active.get(workflow_id)

    def track(self, workflow_id: str) -> ActiveRun:
        with self._lock:
            run = self._active.get(workflow_id)
            if run is None:
                run = self._active[workflow_id] = ActiveRun(workflow_id)
            return run

    def claim(self, run: ActiveRun) -> bool:
        with self._lock:
            if run.claimed or run.done.is_set():
                return False
            run.claimed = True
            return True

    def unclaim(self, run: ActiveRun) -> None:
        with self._lock:
            run.claimed = False

    def stop_all(self, reason: str) -> None:
        """Ask every running workflow to stop at its next step boundary; release waiters of
        runs that have not started (they stay PENDING in the journal)."""
        with self._lock:
            runs = list(self._active.values())
        for run in runs:
            if run.context is not None:
                run.context.stop(reason)
            elif not run.claimed and self.claim(run):
                self._forget(run)
                run.resolve(Status.PENDING, None, EngineClosedError(self.engine.path))

    def execute(self, run: ActiveRun, definition: Definition, inputs: str,
                recorded: dict[int, StepRecord], deadline_ms: int | None,
                waited: bool = False) -> None:
        """Run a claimed workflow in this thread to its end (or to an interruption).
        `waited`: the caller waits for the outcome (a direct call), so it is committed at once
        instead of lingering for the next batch."""
        engine = self.engine
        context = RunContext(engine, definition, run.workflow_id, recorded, deadline_ms)
        run.context = context
        token = current_run.set(context)
        status, value = Status.SUCCESS, None
        error: BaseException | None = None
        try:
            args, kwargs = run.call if run.call is not None else decode_inputs(inputs)
            run.call = None
            value = definition.fn(*args, **kwargs)
            output = encode_value(definition.name, "the workflow's result", value)
        except Interrupted as stop:
            self._interrupted(run, stop)
            return
        except Suspended as pause:
            self._suspend(run, definition, pause.wake_ms)
            return
        except Exception as failure:
            status, error, output = Status.ERROR, failure, None
        finally:
            current_run.reset(token)
            run.context = None
        if context.fatal is not None:  # a determinism error the workflow tried to swallow
            status, error, output, value = Status.ERROR, context.fatal, None, None
        crashpoints.hit("before_outcome")
        stored_error = codec.encode_error(error) if error is not None else None
        if status is Status.ERROR:
            log.warning("workflow %s (%s) failed: %s", run.workflow_id, definition.name, error)

        def durable(failure: BaseException | None, applied: bool = True) -> None:
            # Waiters learn the outcome only once it is durable: read-your-writes for callers.
            if failure is not None:
                log.error("workflow %s: could not record its outcome: %s; it stays PENDING "
                          "and resumes on the next start", run.workflow_id, failure)
                self.finish(run, Status.PENDING, None, failure)
            elif not applied:  # cancelled while it ran: cancellation wins
                self.finish(run, Status.CANCELLED, None, WorkflowCancelledError(run.workflow_id))
            else:
                crashpoints.hit("after_outcome")
                self.finish(run, status, value, error)

        try:
            engine.journal.finish_workflow(run.workflow_id, status, output, stored_error,
                                           engine.clock.now_ms(), on_durable=durable,
                                           urgent=waited)
        except Exception as failure:  # the journal is closed or unusable
            durable(failure)

    def _suspend(self, run: ActiveRun, definition: Definition, wake_ms: int) -> None:
        """A long durable sleep: release this thread; a timer resumes the run by replay."""
        engine = self.engine
        engine.journal.set_not_before(run.workflow_id, wake_ms)
        self.unclaim(run)
        engine.timers.at(wake_ms, lambda: engine.submit_run(run, definition, None))

    def _interrupted(self, run: ActiveRun, stop: Interrupted) -> None:
        engine = self.engine
        if stop.reason == "timed out":
            error = WorkflowCancelledError(run.workflow_id, "timed out")
            log.warning("workflow %s timed out and was cancelled", run.workflow_id)
            engine.journal.finish_workflow(
                run.workflow_id, Status.CANCELLED, None, codec.encode_error(error),
                engine.clock.now_ms(),
                on_durable=lambda failure, _: self.finish(
                    run, Status.CANCELLED if failure is None else Status.PENDING, None,
                    error if failure is None else failure))
        elif stop.reason == "cancelled":
            self.finish(run, Status.CANCELLED, None, WorkflowCancelledError(run.workflow_id))
        else:  # shutdown or a journal failure: leave it PENDING for the next start
            cause = stop.cause or EngineClosedError(engine.path)
            self.finish(run, Status.PENDING, None, cause)

    def finish(self, run: ActiveRun, status: Status, value: Any,
               error: BaseException | None) -> None:
        self._forget(run)
        run.resolve(status, value, error)
        self.engine.queues.wake()  # a queue slot may have opened (the outcome is durable)

    def _forget(self, run: ActiveRun) -> None:
        with self._lock:
            if self._active.get(run.workflow_id) is run:
                del self._active[run.workflow_id]


def encode_inputs(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return encode_value(name, "an input", {"args": list(args), "kwargs": kwargs})


def decode_inputs(inputs: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    data = codec.decode(inputs)
    return tuple(data["args"]), dict(data["kwargs"])
