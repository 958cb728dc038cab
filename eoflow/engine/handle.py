"""WorkflowHandle: a workflow run's id, status and result, from anywhere in the process."""

from __future__ import annotations

import time
from typing import Any

from eoflow.engine.active import ActiveRun, StopReason
from eoflow.engine.context import Interrupted, current_run
from eoflow.engine.runtime import Runtime
from eoflow.errors import (
    AwaitTimeoutError,
    WorkflowCancelledError,
    WorkflowNotFoundError,
    WorkflowParkedError,
)
from eoflow.journal import codec
from eoflow.journal.records import Status, WorkflowRecord


def recorded_outcome(record: WorkflowRecord) -> Any:
    """The result of a finished run as the journal holds it (an error is raised)."""
    if record.status is Status.SUCCESS:
        return codec.decode(record.output)
    if record.status is Status.PARKED:
        raise WorkflowParkedError(record.workflow_id, record.recovery_attempts)
    if record.error is not None:
        raise codec.decode_error(record.error)
    raise WorkflowCancelledError(record.workflow_id)


def outcome_for_waiter(rt: Runtime, run: ActiveRun) -> Any:
    """The outcome of a finished wait on `run`. A run left PENDING (the engine is closing, or
    its journal failed) raises its cause; but inside a workflow, it stops the waiting workflow
    the same way (Interrupted, which user code does not catch), so that the parent also stays
    PENDING and resumes on the next start instead of failing."""
    if run.status is Status.PENDING and run.error is not None and current_run.get() is not None:
        reason = StopReason.SHUTDOWN if rt.closed else StopReason.JOURNAL_FAILURE
        raise Interrupted(reason, run.error)
    return run.outcome()


class WorkflowHandle:
    def __init__(self, runtime: Runtime, workflow_id: str, run: ActiveRun | None = None) -> None:
        self._runtime = runtime
        self.workflow_id = workflow_id
        self._run = run

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"

    def status(self) -> Status:
        """The run's status, as the journal has it (a run that ended here in SUCCESS is
        answered from memory: nothing changes a success)."""
        run = self._run
        if run is not None and run.done.is_set() and run.status is Status.SUCCESS:
            return Status.SUCCESS
        record = self._runtime.journal.get_workflow(self.workflow_id)
        if record is None:
            raise WorkflowNotFoundError(self.workflow_id)
        return record.status

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to finish and return its result (or raise its error). A run that
        ended CANCELLED, PARKED or ERROR and was resumed since is waited for again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            run = self._runtime.runs.get(self.workflow_id) or self._run
            if run is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not run.done.wait(left):
                    raise AwaitTimeoutError(f"workflow {self.workflow_id!r}", timeout or 0)
                if run.status is Status.SUCCESS or run.status is Status.PENDING:
                    return outcome_for_waiter(self._runtime, run)
                self._run = None  # it ended here; whether it was resumed since, the journal says
                record = self._runtime.journal.get_workflow(self.workflow_id)
                if record is not None and record.status is run.status:
                    return run.outcome()
            record = self._runtime.journal.get_workflow(self.workflow_id)
            if record is None:
                raise WorkflowNotFoundError(self.workflow_id)
            if record.status.terminal:
                return recorded_outcome(record)
            if deadline is not None and time.monotonic() >= deadline:
                raise AwaitTimeoutError(f"workflow {self.workflow_id!r}", timeout or 0)
            time.sleep(pause)  # the run is in another process, or not started: look again
            pause = min(pause * 2, 0.2)
