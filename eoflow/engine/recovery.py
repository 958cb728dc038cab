"""Recovery: at start, every PENDING run resumes from its last recorded step.

A run that keeps being recovered without recording a new step (it crashes the process each
time) is parked after its definition's `max_recovery_attempts`, for an operator to look at.

Runs taken over keep their lane's order (a Kafka partition's): one that older runs of its lane
precede, still PENDING under another executor (a live one finishing them, or one whose lease
has not run out yet), waits for them in its lane before it runs. Without this, the runs a dead
engine recorded for a partition while it waited for the previous owner could overtake that
owner's.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from eoflow.engine import runner
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.registry import REGISTRY
from eoflow.engine.runtime import Runtime
from eoflow.errors import JournalError
from eoflow.journal.records import WorkflowRecord

log = logging.getLogger("eoflow.engine")
LANE_POLL = 0.2  # seconds between looks while a run taken over waits for older ones


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
    if expired:
        _end_app_sessions(rt, expired)
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
    if not pending:
        return []
    counts = rt.journal.pending_step_counts()
    attempts = rt.journal.note_recoveries(
        [(r.workflow_id, counts.get(r.workflow_id, 0)) for r in pending], rt.clock.now_ms())
    handles: list[WorkflowHandle] = []
    behind = _behind_others(rt, pending)
    for record, tries in zip(pending, attempts, strict=True):
        if record.workflow_id in behind and record.lane is not None:
            rt.pool.submit(_after_older(rt, record.lane, record.workflow_id), lane=record.lane)
        _resume_one(rt, record, tries, handles)
    log.info("engine: resuming %d pending workflow(s)", len(handles))
    return handles


def _behind_others(rt: Runtime, pending: list[WorkflowRecord]) -> set[str]:
    """The runs just claimed that must wait for older runs of their lane held by another
    executor: the first claimed after each such run (the claimed runs behind it follow it
    in the lane)."""
    laned = {r.workflow_id for r in pending if r.lane is not None}
    if not laned:
        return set()
    behind: set[str] = set()
    others: set[str] = set()  # lanes where another executor's run came since one of ours
    for workflow_id, lane, mine in rt.journal.pending_lane_order():
        if not mine:
            others.add(lane)
        elif lane in others:
            others.discard(lane)
            if workflow_id in laned:
                behind.add(workflow_id)
    return behind


def _after_older(rt: Runtime, lane: str, workflow_id: str) -> Callable[[], None]:
    """A task of `lane`, queued before run `workflow_id`: it returns once no older run of the
    lane is PENDING under another executor. If the engine closes first, the lane stays held:
    nothing behind it runs out of order."""
    def wait() -> None:
        told = False
        while not rt.closed:
            try:
                older = rt.journal.older_foreign_lane_runs(lane, workflow_id)
            except JournalError as error:  # the journal may come back; the order must hold
                log.warning("engine: lane %s: cannot count its older runs (%s); retrying",
                            lane, error)
                older = 1
            if older == 0:
                return
            if not told:
                log.info("engine: run %s, taken over, waits for %d older run(s) of lane %s "
                         "that another executor holds, to keep their order", workflow_id,
                         older, lane)
                told = True
            time.sleep(LANE_POLL)
        rt.pool.hold_current_lane()

    return wait


def _resume_one(rt: Runtime, record: WorkflowRecord, tries: int,
                handles: list[WorkflowHandle]) -> None:
    """Queue one claimed run (in its lane's order), or park it if it keeps crashing."""
    definition = REGISTRY.workflow(record.name)
    if definition is None:
        log.error("workflow %s: no workflow named %r is defined in this app; it stays "
                  "PENDING until an app that defines it runs", record.workflow_id, record.name)
        return
    if tries > definition.max_recovery_attempts:
        rt.journal.park_workflow(record.workflow_id, rt.clock.now_ms())
        log.error("workflow %s (%s) was recovered %d times without progress and is "
                  "parked; fix the cause, then `eoflow workflows resume %s`",
                  record.workflow_id, record.name, tries - 1, record.workflow_id)
        return
    run = rt.runs.track(record.workflow_id)
    wake = record.not_before_ms
    if wake is not None and wake > rt.clock.now_ms() and record.lane is None:
        rt.timers.at(wake, functools.partial(  # asleep: wake on time
            runner.submit, rt, run, definition, None))
    else:  # in its lane's order: a sleeper replays to its sleep and holds the lane again
        runner.submit(rt, run, definition, None, record.lane)
    handles.append(WorkflowHandle(rt, record.workflow_id, run))
