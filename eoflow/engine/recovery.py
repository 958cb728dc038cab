"""Recovery: at start, every PENDING run resumes from its last recorded step.

A run that keeps being recovered without recording a new step (it crashes the process each
time) is parked after its definition's `max_recovery_attempts`, for an operator to look at.
"""

from __future__ import annotations

import functools
import logging

from eoflow.engine import runner
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.registry import REGISTRY
from eoflow.engine.runtime import Runtime

log = logging.getLogger("eoflow.engine")


def recover(rt: Runtime) -> list[WorkflowHandle]:
    """Resume every PENDING run from its last recorded step; park crash-looping ones."""
    pending = rt.journal.runnable_workflows()
    if not pending:
        return []
    counts = rt.journal.pending_step_counts()
    attempts = rt.journal.note_recoveries(
        [(r.workflow_id, counts.get(r.workflow_id, 0)) for r in pending], rt.clock.now_ms())
    handles = []
    for record, tries in zip(pending, attempts, strict=True):
        definition = REGISTRY.workflow(record.name)
        if definition is None:
            log.error("workflow %s: no workflow named %r is defined in this app; it stays "
                      "PENDING until an app that defines it runs", record.workflow_id,
                      record.name)
            continue
        if tries > definition.max_recovery_attempts:
            rt.journal.park_workflow(record.workflow_id, rt.clock.now_ms())
            log.error("workflow %s (%s) was recovered %d times without progress and is "
                      "parked; fix the cause, then `eoflow workflows resume %s`",
                      record.workflow_id, record.name, tries - 1, record.workflow_id)
            continue
        run = rt.runs.track(record.workflow_id)
        wake = record.not_before_ms
        if wake is not None and wake > rt.clock.now_ms() and record.lane is None:
            rt.timers.at(wake, functools.partial(  # asleep: wake on time
                runner.submit, rt, run, definition, None))
        else:  # in its lane's order: a sleeper replays to its sleep and holds the lane again
            runner.submit(rt, run, definition, None, record.lane)
        handles.append(WorkflowHandle(rt, record.workflow_id, run))
    log.info("engine: resuming %d pending workflow(s)", len(handles))
    return handles
