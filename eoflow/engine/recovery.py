"""Recovery: at start, every PENDING run resumes from its last recorded step.

A run that keeps being recovered without recording a new step (it crashes the process each
time) is parked after its definition's `max_recovery_attempts`, for an operator to look at.

Runs taken over keep their lane's order (a Kafka partition's): see heldlanes.py.
"""

from __future__ import annotations

import functools
import logging
import threading

from eoflow.engine import heldlanes, runner
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.registry import REGISTRY
from eoflow.engine.runtime import Runtime
from eoflow.errors import JournalError
from eoflow.journal.records import WorkflowRecord

log = logging.getLogger("eoflow.engine")


def recover(rt: Runtime) -> list[WorkflowHandle]:
    """Claim every PENDING run no live executor owns and resume it from its last recorded
    step; park crash-looping ones. Say which runs of other versions of the app are left."""
    handles = take_over(rt)
    mine = rt.journal.app_version
    for version, pending, enqueued in rt.journal.live_runs_by_version():
        if version is not None and version != mine:
            log.warning("engine: %d PENDING and %d ENQUEUED run(s) of app version %s are left "
                        "waiting (this engine runs version %s): run that version's code to "
                        "finish them, or let this one take them with `eoflow workflows resume "
                        "--any-version --version %s`", pending, enqueued, version, mine,
                        version)
    return handles


def take_over(rt: Runtime, if_any: bool = False) -> list[WorkflowHandle]:
    """Expire the executors whose lease ran out, and resume the runs claimed from them (and
    the unowned ones) here. `if_any`: write only if a read finds something to take."""
    with rt.lanes_lock:  # from the claim until queued: see kafka/lanes.py
        expired, pending = rt.journal.claim_runs(rt.clock.now_ms(), if_any)
        for executor in expired:
            log.warning("engine: executor %s is gone (its process ended, or its lease ran "
                        "out); taking its runs over", executor)
        handles = _resume(rt, pending)
    if expired:  # on a thread of its own: not the lease keeper's (it may connect for long),
        # nor a worker's (the workers may all be waiting on the very locks it ends)
        threading.Thread(target=_end_app_sessions, args=(rt, expired), daemon=True,
                         name="eoflow-end-sessions").start()
    return handles


def _end_app_sessions(rt: Runtime, expired: list[str]) -> None:
    """An engine paused inside a transaction of the application database (--app-db) keeps
    its locks there until it wakes: the runs and messages taken over from it would wait on
    them. End its session there (the journal's own is ended by claim_runs)."""
    try:
        ended = rt.txstore.end_sessions(expired)
    except Exception as error:  # e.g. the role may not end others' sessions
        log.warning("engine: could not end the application database sessions of %s (%s); "
                    "work that needs their locks waits until they wake up. Grant the role "
                    "pg_signal_backend", ", ".join(expired), error)
        return
    if ended:
        log.warning("engine: ended %d application database session(s) of %s, taken over",
                    ended, ", ".join(expired))


def _resume(rt: Runtime, pending: list[WorkflowRecord]) -> list[WorkflowHandle]:
    """Queue the runs just claimed (under the lanes lock). Once claimed they are this
    executor's and no other engine takes them: a failed read or write here must not leave
    them unqueued, so the recovery counts are skipped if they cannot be written."""
    if not pending:
        return []
    try:
        counts = rt.journal.pending_step_counts()
        attempts = rt.journal.note_recoveries(
            [(r.workflow_id, counts.get(r.workflow_id, 0)) for r in pending], rt.clock.now_ms())
    except JournalError as error:
        log.warning("engine: could not count the recoveries of %d run(s) taken over (%s); "
                    "they resume without", len(pending), error)
        attempts = [0] * len(pending)
    handles: list[WorkflowHandle] = []
    laned: list[tuple[str, str, heldlanes.Queue]] = []
    for record, tries in zip(pending, attempts, strict=True):
        queue = _resume_one(rt, record, tries, handles)
        if queue is None:
            continue
        if record.lane is None:
            queue()
        else:  # in its lane's order, behind older runs another executor holds (heldlanes.py)
            laned.append((record.workflow_id, record.lane, queue))
    rt.held_lanes.settle(laned)
    log.info("engine: resuming %d pending workflow(s)", len(handles))
    return handles


def _resume_one(rt: Runtime, record: WorkflowRecord, tries: int,
                handles: list[WorkflowHandle]) -> heldlanes.Queue | None:
    """Prepare one claimed run: returns how to queue it (in its lane, if any), or None if it
    is parked for crashing again and again, or not defined here."""
    definition = REGISTRY.workflow(record.name)
    if definition is None:
        log.error("workflow %s: no workflow named %r is defined in this app; it stays "
                  "PENDING until an app that defines it runs", record.workflow_id, record.name)
        return None
    if tries > definition.max_recovery_attempts and _parked(rt, record):
        log.error("workflow %s (%s) was recovered %d times without progress and is "
                  "parked; fix the cause, then `eoflow workflows resume %s`",
                  record.workflow_id, record.name, tries - 1, record.workflow_id)
        return None
    run = rt.runs.track(record.workflow_id)
    handles.append(WorkflowHandle(rt, record.workflow_id, run))
    wake = record.not_before_ms
    if wake is not None and wake > rt.clock.now_ms() and record.lane is None:
        return lambda: rt.timers.at(wake, functools.partial(  # asleep: wake on time
            runner.submit, rt, run, definition, None))
    # In its lane's order: a sleeper replays to its sleep and holds the lane again.
    return functools.partial(runner.submit, rt, run, definition, None, record.lane)


def _parked(rt: Runtime, record: WorkflowRecord) -> bool:
    try:
        rt.journal.park_workflow(record.workflow_id, rt.clock.now_ms())
        return True
    except JournalError as error:  # it is ours now: run it rather than leave it unqueued
        log.warning("workflow %s: could not be parked (%s); it resumes", record.workflow_id,
                    error)
        return False
