"""Operator actions on runs: cancel, resume, fork. Used by the Engine API and the CLI.

When no engine owns the journal, the CLI applies the change to the journal directly and the next
engine acts on it. When one does, the CLI also leaves a request row that the running engine
picks up within its poll interval (`apply_request`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from eoflow.engine.context import new_workflow_id
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.registry import REGISTRY
from eoflow.errors import WorkflowCancelledError, WorkflowNotFoundError, WorkflowStateError
from eoflow.journal.records import NewWorkflow, Status, WorkflowRecord

if TYPE_CHECKING:
    from eoflow.engine.engine import Engine

log = logging.getLogger("eoflow.engine")
RESUMABLE = (Status.CANCELLED, Status.PARKED, Status.ENQUEUED, Status.PENDING)


def _get(engine: Engine, workflow_id: str) -> WorkflowRecord:
    record = engine.journal.get_workflow(workflow_id)
    if record is None:
        raise WorkflowNotFoundError(workflow_id)
    return record


def cancel(engine: Engine, workflow_id: str) -> None:
    """Cancel a run: it stops at its next step boundary and can be resumed later."""
    record = _get(engine, workflow_id)
    if record.status.terminal:
        raise WorkflowStateError(workflow_id, record.status.value, "cancel")
    engine.journal.set_status(workflow_id, Status.CANCELLED, engine.clock.now_ms())
    stop_locally(engine, workflow_id)
    for child in engine.journal.live_children(workflow_id):  # cancellation reaches children
        cancel(engine, child)


def stop_locally(engine: Engine, workflow_id: str) -> None:
    run = engine.runner.get(workflow_id)
    if run is None:
        return
    if run.context is not None:
        run.context.stop("cancelled")
    elif engine.runner.claim(run):  # queued here, not started: it never will
        engine.runner.finish(run, Status.CANCELLED, None, WorkflowCancelledError(workflow_id))
    log.info("workflow %s cancelled", workflow_id)


def resume(engine: Engine, workflow_id: str) -> WorkflowHandle:
    """Run a cancelled, parked or queued run again from its last recorded step."""
    record = _get(engine, workflow_id)
    if record.status not in RESUMABLE:
        raise WorkflowStateError(workflow_id, record.status.value, "resume")
    definition = REGISTRY.workflow(record.name)
    if definition is None:
        raise WorkflowStateError(workflow_id, f"{record.status.value} (no workflow named "
                                 f"{record.name!r} in this app)", "resume")
    if engine.runner.get(workflow_id) is not None:
        return WorkflowHandle(engine, workflow_id, engine.runner.get(workflow_id))
    deadline = definition.deadline(engine.clock.now_ms())
    engine.journal.resume_workflow(workflow_id, deadline, engine.clock.now_ms())
    run = engine.runner.track(workflow_id)
    engine.submit_run(run, definition, None, record.lane)
    log.info("workflow %s resumed", workflow_id)
    return WorkflowHandle(engine, workflow_id, run)


def fork(engine: Engine, workflow_id: str, from_step: int, new_id: str | None = None
         ) -> WorkflowHandle:
    """Start a new run of the same workflow and inputs that reuses the recorded steps before
    `from_step` and executes again from there."""
    record = _get(engine, workflow_id)
    definition = REGISTRY.workflow(record.name)
    if definition is None:
        raise WorkflowStateError(workflow_id, f"{record.status.value} (no workflow named "
                                 f"{record.name!r} in this app)", "fork")
    if from_step < 1:
        raise WorkflowStateError(workflow_id, record.status.value, f"fork from step {from_step}")
    target = new_id or new_workflow_id()
    now = engine.clock.now_ms()
    engine.journal.fork_workflow(
        NewWorkflow(target, record.name, record.inputs, now, parent_id=None),
        workflow_id, from_step, now)
    run = engine.runner.track(target)
    engine.submit_run(run, definition, None)
    log.info("workflow %s forked from %s at step %d", target, workflow_id, from_step)
    return WorkflowHandle(engine, target, run)


def apply_request(engine: Engine, workflow_id: str, action: str) -> None:
    """Act on a request left by the CLI; the journal already reflects it."""
    try:
        if action == "cancel":
            stop_locally(engine, workflow_id)
        elif action == "resume":
            record = _get(engine, workflow_id)
            if record.status is Status.PENDING and engine.runner.get(workflow_id) is None:
                definition = REGISTRY.workflow(record.name)
                if definition is not None:
                    run = engine.runner.track(workflow_id)
                    engine.submit_run(run, definition, None, record.lane)
        elif action == "retry_quarantined":
            engine.retry_quarantined(workflow_id)  # here the id is the message's key
        else:
            log.warning("engine: unknown request %r for workflow %s", action, workflow_id)
    except Exception as error:
        log.warning("engine: request %s on workflow %s failed: %s", action, workflow_id, error)
