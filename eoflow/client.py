"""`eoflow.Client`: start work for an engine to run, from a process that runs none.

A web app, a script or a cron job starts or enqueues a workflow by name, sends it messages,
reads its events, cancels it and reads its status and result, on the journal alone: no engine,
no app code. Each change is one short write transaction beside the running engines (as the
CLI's are). A run started here is owned by no executor: an engine on the journal claims it
within a second (see engine/lease.py) and runs it; an enqueued one waits for a queue
dispatcher. Workflow timeouts declared in the app's code do not apply to runs started here
(the client does not know them).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from eoflow.engine.context import new_workflow_id
from eoflow.engine.executor import encode_inputs, encode_value
from eoflow.engine.handle import recorded_outcome
from eoflow.engine.primitives import DEFAULT_TOPIC
from eoflow.engine.telemetry import load as load_telemetry
from eoflow.errors import AwaitTimeoutError, WorkflowConflictError, WorkflowNotFoundError
from eoflow.journal import codec, operator, primitive_ops
from eoflow.journal.admin import now_ms, transaction
from eoflow.journal.backend import Conn
from eoflow.journal.opening import open_reader, open_side
from eoflow.journal.records import NewWorkflow, Status, WorkflowRecord
from eoflow.journal.sql import Q

T = TypeVar("T")
POLL = 0.1  # seconds between looks at the journal while waiting for a result or an event


class Client:
    """A connection to a journal (a SQLite file or a PostgreSQL URL) for starting and
    following work that engines run. Use as a context manager, or close it."""

    def __init__(self, journal: str | os.PathLike[str] | None = None) -> None:
        target = os.fspath(journal if journal is not None else
                           os.environ.get("EOFLOW_JOURNAL", "eoflow.db"))
        self._side = open_side(target)
        try:
            self._reader = open_reader(target)
        except BaseException:
            self._side.conn.close()
            raise
        self.path = self._side.where
        self._lock = threading.Lock()  # one write at a time on the client's connection

    def close(self) -> None:
        self._reader.close()
        with self._lock:
            self._side.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- starting work --------------------------------------------------------------------------

    def start(self, name: str, *args: Any, workflow_id: str | None = None,
              **kwargs: Any) -> str:
        """Record a run of workflow `name` (as the app names it) with these inputs; an engine
        on the journal runs it. Returns its id. Starting an id that exists changes nothing
        (a WorkflowConflictError if it is another workflow's)."""
        return self._create(name, args, kwargs, workflow_id, Status.PENDING)

    def enqueue(self, queue: str, name: str, *args: Any, workflow_id: str | None = None,
                dedup_id: str | None = None, priority: int | None = None,
                **kwargs: Any) -> str:
        """Record a run of `name` in `queue` (declared by the app with eoflow.Queue), started by
        an engine's dispatcher within the queue's limits. Returns its id."""
        return self._create(name, args, kwargs, workflow_id, Status.ENQUEUED, queue=queue,
                            dedup_id=dedup_id, priority=priority or 0)

    def _create(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                workflow_id: str | None, status: Status, **fields: Any) -> str:
        now = now_ms()
        wid = workflow_id or new_workflow_id()
        tel = load_telemetry()  # the caller's span, if any, parents the run's trace
        run = NewWorkflow(wid, name, encode_inputs(name, args, kwargs), now, status=status,
                          trace_context=None if tel is None else tel.start_context(wid, name),
                          **fields)

        def create(conn: Conn) -> str | None:
            if primitive_ops.insert_run(conn, self._side.backend, run, now, None):
                return None
            row = conn.execute(Q["workflow_name_status"], (run.workflow_id,)).fetchone()
            return None if row is None else str(row[0])

        try:
            existing = self._write(create)
        except BaseException:
            if tel is not None:
                tel.settle([run.trace_context], [False])
            raise
        if tel is not None:
            tel.settle([run.trace_context], [existing is None])
        if existing is not None and existing != name:
            raise WorkflowConflictError(run.workflow_id, existing, name)
        return run.workflow_id

    # -- talking to runs ------------------------------------------------------------------------

    def send(self, destination_id: str, message: Any, topic: str | None = None) -> None:
        """Send `message` to run `destination_id` (its `eoflow.recv` gets it)."""
        text = encode_value("Client.send", "a message", message)
        self._write(lambda conn: primitive_ops.send_message(
            conn, destination_id, topic or DEFAULT_TOPIC, text, now_ms(), None))

    def get_event(self, workflow_id: str, key: str, timeout: float = 0.0) -> Any:
        """The value run `workflow_id` published under `key`, waiting up to `timeout` seconds
        for it; None if none by then."""
        value = self._poll(lambda: self._reader.get_event(workflow_id, key), timeout)
        return None if value is None else codec.decode(value)

    def cancel(self, workflow_id: str) -> None:
        """Cancel a run and its live descendants; the executor running it stops it at its
        next step boundary."""
        self._write(lambda conn: operator.cancel(conn, workflow_id, now_ms(), notify=True))

    # -- following runs -------------------------------------------------------------------------

    def status(self, workflow_id: str) -> Status:
        return self._record(workflow_id).status

    def result(self, workflow_id: str, timeout: float | None = None) -> Any:
        """The run's result once it finished (its error is raised), waiting up to `timeout`
        seconds (None: as long as it takes); AwaitTimeoutError if it is still running."""
        def finished() -> WorkflowRecord | None:
            record = self._record(workflow_id)
            return record if record.status.terminal else None

        record = self._poll(finished, float("inf") if timeout is None else timeout)
        if record is None:
            raise AwaitTimeoutError(f"the result of {workflow_id}", timeout or 0.0)
        return recorded_outcome(record)

    def _record(self, workflow_id: str) -> WorkflowRecord:
        record = self._reader.get_workflow(workflow_id)
        if record is None:
            raise WorkflowNotFoundError(workflow_id)
        return record

    # -- plumbing -------------------------------------------------------------------------------

    def _write(self, apply: Callable[[Conn], T]) -> T:
        with self._lock:
            return transaction(self._side, apply)

    @staticmethod
    def _poll(look: Callable[[], T | None], timeout: float) -> T | None:
        deadline = time.monotonic() + timeout
        while True:
            found = look()
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
