"""Operator actions on runs: cancel, resume, fork, and quarantine retries.

The change to the journal has one implementation (journal/operator.py), shared with the CLI,
which runs it on its own connection while an engine may run and leaves a request row. Here the
engine makes the change through its journal and then acts on the runs it holds in memory; a
request left by the CLI is acted on the same way by `apply_request`, within the poll interval
of the `RequestPoller`.
"""

from __future__ import annotations

import logging

from eoflow.engine import runner
from eoflow.engine.active import StopReason
from eoflow.engine.background import Background
from eoflow.engine.context import new_workflow_id
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.kafka.quarantine import retry_quarantined
from eoflow.engine.registry import REGISTRY, Definition
from eoflow.engine.runtime import Runtime
from eoflow.errors import WorkflowCancelledError, WorkflowNotFoundError, WorkflowStateError
from eoflow.journal import codec
from eoflow.journal.records import Action, Status, WorkflowRecord

log = logging.getLogger("eoflow.engine")


def _definition(rt: Runtime, workflow_id: str, action: str) -> tuple[WorkflowRecord,
                                                                      Definition]:
    record = rt.journal.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFoundError(workflow_id)
    definition = REGISTRY.workflow(record.name)
    if definition is None:
        raise WorkflowStateError(workflow_id, f"{record.status.value} (no workflow named "
                                 f"{record.name!r} in this app)", action)
    return record, definition


def cancel(rt: Runtime, workflow_id: str) -> None:
    """Cancel a run and its live descendants: they stop at their next step boundary."""
    for cancelled in rt.journal.cancel_workflow(workflow_id, rt.clock.now_ms()):
        stop_locally(rt, cancelled)


def stop_locally(rt: Runtime, workflow_id: str) -> None:
    """Stop a cancelled run held in this process, if the journal still says CANCELLED (a
    request from the CLI may have been overtaken by a resume since)."""
    with rt.runs.operator_lock:
        run = rt.runs.get(workflow_id)
        if run is None:
            return
        record = rt.journal.get_workflow(workflow_id)
        if record is None or record.status is not Status.CANCELLED:
            return
        if run.context is not None:
            run.context.stop(StopReason.CANCELLED)
        elif rt.runs.claim(run):  # queued here, not started: it never will
            runner.finish(rt, run, Status.CANCELLED, None, WorkflowCancelledError(workflow_id))
    log.info("workflow %s cancelled", workflow_id)


def resume(rt: Runtime, workflow_id: str) -> WorkflowHandle:
    """Run a cancelled, parked or queued run again from its last recorded step."""
    _, definition = _definition(rt, workflow_id, "resume")
    with rt.runs.operator_lock:
        active = rt.runs.get(workflow_id)
        if active is not None and (active.claimed or active.context is not None):
            # Running here: if it was cancelled and has not stopped yet, the journal says
            # PENDING again, and the run goes on when it reaches its boundary (runner.py).
            current = rt.journal.get_workflow(workflow_id)
            if current is not None and current.status is not Status.PENDING:
                rt.journal.resume_workflow(workflow_id, rt.clock.now_ms())
            return WorkflowHandle(rt, workflow_id, active)
        record = rt.journal.resume_workflow(workflow_id, rt.clock.now_ms())
        return _run(rt, record, definition, "resumed")


def fork(rt: Runtime, workflow_id: str, from_step: int, new_id: str | None = None
         ) -> WorkflowHandle:
    """Start a new run of the same workflow and inputs that reuses the recorded steps before
    `from_step` and executes again from there."""
    _, definition = _definition(rt, workflow_id, "fork")
    record = rt.journal.fork_workflow(workflow_id, from_step, new_id or new_workflow_id(),
                                      rt.clock.now_ms())
    log.info("workflow %s forked from %s at step %d", record.workflow_id, workflow_id,
             from_step)
    return _run(rt, record, definition, "started")


def _run(rt: Runtime, record: WorkflowRecord, definition: Definition, what: str
         ) -> WorkflowHandle:
    if record.status is Status.PENDING and runner.held_elsewhere(rt, record.workflow_id):
        log.info("workflow %s %s; the executor that owns it runs it", record.workflow_id, what)
        return WorkflowHandle(rt, record.workflow_id)
    run = rt.runs.track(record.workflow_id)
    if record.status is Status.PENDING:  # a queued one waits for its queue's dispatcher
        if not runner.kept_held(rt, run, definition):
            runner.submit(rt, run, definition, None, record.lane)
    else:
        rt.queue_wakeup.set()
    log.info("workflow %s %s", record.workflow_id, what)
    return WorkflowHandle(rt, record.workflow_id, run)


def apply_request(rt: Runtime, target: str, action: Action) -> None:
    """Act on a request left by the CLI; the journal already reflects it."""
    try:
        if action is Action.CANCEL:
            stop_locally(rt, target)
        elif action is Action.RESUME:
            with rt.runs.operator_lock:
                record, definition = _definition(rt, target, "resume")
                if record.status is Status.PENDING and rt.runs.get(target) is None:
                    _run(rt, record, definition, "resumed")
        elif action is Action.RETRY_QUARANTINED:
            retry_quarantined(rt, target)  # the target is the message's key
    except Exception as error:
        log.warning("engine: request %s on %s failed: %s", action.value, target,
                    codec.describe(error))


class RequestPoller(Background):
    """Applies the requests the CLI leaves in the journal while this engine runs."""

    join_timeout = 2.0

    def __init__(self, rt: Runtime) -> None:
        super().__init__("eoflow-requests")
        self._rt = rt

    def apply_pending(self) -> None:
        if self._rt.journal.has_requests():
            for _, target, action in self._rt.journal.take_requests():
                apply_request(self._rt, target, action)

    def _run(self) -> None:
        while not self._stop.wait(self._rt.config.request_poll):
            try:
                self.apply_pending()
            except Exception as error:  # keep polling; the journal may recover
                if not self._stop.is_set():
                    log.warning("engine: could not read operator requests: %s", error)
