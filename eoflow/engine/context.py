"""Where a call is running: in which workflow run, which transaction, under which engine.

The state lives in context variables set by the runner around each run, so a decorated function
can tell a durable call (inside a workflow) from a plain one. The runtime of the engine a call
belongs to is found through `active_runtime()`: the run's, else the innermost `with engine:`
block's, else the one open engine's of the process.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from eoflow.engine.active import StopReason
from eoflow.engine.registry import Definition
from eoflow.engine.runtime import Runtime
from eoflow.errors import ContextError
from eoflow.journal.records import StepRecord
from eoflow.latch import Latch


class Interrupted(BaseException):
    """Raised at a step boundary to stop a run: shutdown, cancellation or timeout.

    A BaseException so user code's `except Exception` does not swallow it.
    """

    def __init__(self, reason: StopReason, cause: BaseException | None = None) -> None:
        super().__init__(reason.value)
        self.reason: StopReason = reason
        self.cause = cause


class RunContext:
    """The state of one workflow run in this process (not journaled itself)."""

    def __init__(
        self,
        runtime: Runtime,
        definition: Definition,
        workflow_id: str,
        recorded: dict[int, StepRecord],
        deadline_ms: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.definition = definition
        self.workflow_id = workflow_id
        self.recorded = recorded
        # The record of the step just run, not yet written: an in-journal transaction right
        # after it commits it too; anything else writes it first (executor.begin and flush).
        self.carry: StepRecord | None = None
        self.deadline_ms = deadline_ms
        self.step = 0
        self.in_step = False
        self.in_transaction = False
        self.stop_reason: StopReason | None = None  # set from other threads
        self.fatal: BaseException | None = None  # a determinism error: the run must end in ERROR
        self.wakeup = Latch()  # set with stop_reason, to cut a retry wait short (not an Event:
        # one per run, and threading.Event's construction was a quarter of a short run's CPU)

    def next_step(self) -> int:
        self.step += 1
        return self.step

    def stop(self, reason: StopReason) -> None:
        self.stop_reason = reason
        self.wakeup.set()

    def check_boundary(self) -> None:
        """Called before every step: stop here if asked to, or if the deadline has passed."""
        if self.stop_reason is not None:
            raise Interrupted(self.stop_reason)
        if self.fatal is not None:
            raise self.fatal
        if self.deadline_ms is not None and self.runtime.clock.now_ms() >= self.deadline_ms:
            raise Interrupted(StopReason.TIMED_OUT)


current_run: ContextVar[RunContext | None] = ContextVar("eoflow_run", default=None)
current_db: ContextVar[Any | None] = ContextVar("eoflow_db", default=None)
next_workflow_id: ContextVar[list[str] | None] = ContextVar("eoflow_next_id", default=None)
_entered: ContextVar[Runtime | None] = ContextVar("eoflow_engine", default=None)

_open_lock = threading.Lock()
_open: list[Runtime] = []


def runtime_opened(runtime: Runtime) -> None:
    with _open_lock:
        _open.append(runtime)


def runtime_closed(runtime: Runtime) -> None:
    with _open_lock:
        if runtime in _open:
            _open.remove(runtime)


@contextlib.contextmanager
def entered(runtime: Runtime) -> Iterator[None]:
    token = _entered.set(runtime)
    try:
        yield
    finally:
        _entered.reset(token)


def active_runtime() -> Runtime | None:
    """The runtime of the engine this code runs under (see the module docstring)."""
    run = current_run.get()
    if run is not None:
        return run.runtime
    runtime = _entered.get()
    if runtime is not None and not runtime.closed:
        return runtime
    with _open_lock:
        if len(_open) == 1:
            return _open[0]
        if len(_open) > 1:
            raise ContextError(
                "several eoflow engines are open in this process; call through one with "
                "`engine.run(fn, ...)` or inside `with engine:`"
            )
    return None


def db() -> Any:
    """The apsw connection of the running @transaction, whose SQLite transaction is open."""
    conn = current_db.get()
    if conn is None:
        raise ContextError(
            "eoflow.db() is only available inside a @transaction function; move this database "
            "access into one (an @eoflow.on_start function that uses it goes above "
            "@transaction())"
        )
    return conn


@contextlib.contextmanager
def set_workflow_id(workflow_id: str) -> Iterator[None]:
    """Give the next workflow started or called in this block the id `workflow_id`."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ContextError(f"a workflow id must be a non-empty string, got {workflow_id!r}")
    token = next_workflow_id.set([workflow_id])
    try:
        yield
    finally:
        next_workflow_id.reset(token)


def new_workflow_id() -> str:
    """32 hex digits: the time in ms (12), then 80 random bits (20), as in a UUIDv7. New ids
    sort after older ones, so a journal of millions of runs takes each new one at the end of
    its id indexes (a few hot pages) instead of at a random place (a page read and written
    per run): measured with benchmarks/journal_scale.py."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def take_workflow_id() -> str | None:
    pending = next_workflow_id.get()
    if pending:
        return pending.pop()
    return None


def workflow_id() -> str:
    """The id of the workflow run this code is part of."""
    run = current_run.get()
    if run is None:
        raise ContextError("eoflow.workflow_id() was called outside a workflow")
    return run.workflow_id


def require_run(what: str) -> RunContext:
    run = current_run.get()
    if run is None:
        raise ContextError(f"{what} can only be called inside a @workflow function")
    if run.in_step or run.in_transaction:
        raise ContextError(f"{what} cannot be called inside a step or transaction")
    return run
