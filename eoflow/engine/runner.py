"""Executing workflow runs: run a body to its end, suspend it, or leave it for next time.

Every run of this process goes through `submit` (a pool worker) or `execute` (the caller's
thread); the runs held in memory and their claims live in `Runtime.runs` (active.py). An
outcome reaches the run's waiters only once it is durable (read-your-writes for callers).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from eoflow.engine import backoff, crashpoints
from eoflow.engine.active import ActiveRun, StopReason
from eoflow.engine.context import Interrupted, RunContext, current_run
from eoflow.engine.executor import decode_inputs, encode_value, flush
from eoflow.engine.handle import recorded_outcome
from eoflow.engine.primitives import Suspended
from eoflow.engine.registry import Definition
from eoflow.engine.runtime import Runtime
from eoflow.errors import (
    AbortedError,
    EngineClosedError,
    JournalError,
    WorkflowCancelledError,
    WorkflowNotFoundError,
)
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow, Status, StepRecord

log = logging.getLogger("eoflow.engine")
JOURNAL_RETRY_FIRST = 0.5  # seconds before a run whose journal write failed is tried again
JOURNAL_RETRY_CAP = 30.0


def held_elsewhere(rt: Runtime, workflow_id: str) -> bool:
    """True when another live executor owns PENDING run `workflow_id` (it runs it): it is not
    held in this process, and this executor could not claim it."""
    return rt.runs.get(workflow_id) is None and not rt.journal.claim_run(workflow_id)


def submit(rt: Runtime, run: ActiveRun, definition: Definition, new: NewWorkflow | None,
           lane: str | None = None, on_done: Callable[[], None] | None = None) -> None:
    """Queue a run on the pool (in `lane`, if any). `new`: it was just created (nothing to
    replay); else its journal is read when it starts."""
    rt.pool.submit(_Task(rt, run, definition, new, on_done), lane=lane)


class _Task:
    """A run's task on the pool: claim it, then execute it (`new`: just created, nothing to
    replay) or replay its journal. An object, not a closure: a queued Kafka run is held in
    memory until a worker takes it (up to 20,000 of them), and a closure's cells were half of
    the objects the garbage collector went through for each (its full passes took 49 ms)."""

    __slots__ = ("rt", "run", "definition", "new", "on_done")

    def __init__(self, rt: Runtime, run: ActiveRun, definition: Definition,
                 new: NewWorkflow | None, on_done: Callable[[], None] | None) -> None:
        self.rt, self.run, self.definition, self.new, self.on_done = \
            rt, run, definition, new, on_done

    def __call__(self) -> None:
        rt, run, new = self.rt, self.run, self.new
        try:
            if not rt.runs.claim(run):
                return  # another thread ran it (a parent running its child inline)
            if new is not None:
                execute(rt, run, self.definition, new.inputs, {}, new.deadline_ms,
                        trace_context=new.trace_context)
            else:
                resume_claimed(rt, run, self.definition)
        finally:
            if self.on_done is not None:
                self.on_done()


def kept_held(rt: Runtime, run: ActiveRun, definition: Definition) -> bool:
    """True if existing run `run` is held behind older runs of its lane (engine/heldlanes.py):
    it is then queued, as `run`, in its turn; else the caller queues or runs it."""
    return rt.held_lanes.requeue(
        run.workflow_id, lambda lane: functools.partial(submit, rt, run, definition, None, lane))


def resume_claimed(rt: Runtime, run: ActiveRun, definition: Definition,
                   waited: bool = False) -> None:
    """Execute a claimed run that already has a journal: replay its recorded steps."""
    try:
        record = rt.journal.get_workflow(run.workflow_id)
        steps = rt.journal.load_steps(run.workflow_id) if record is not None and \
            record.status is Status.PENDING else {}
    except JournalError as failure:  # the journal cannot be read now (its server is away)
        if rt.closed:
            finish(rt, run, Status.PENDING, None, failure)
        else:
            _retry_after_journal_failure(rt, run, definition, failure, hold_lane=True)
        return
    if record is None:
        finish(rt, run, Status.ERROR, None, WorkflowNotFoundError(run.workflow_id))
        return
    if record.status is Status.ENQUEUED:
        rt.runs.unclaim(run)  # its queue's dispatcher starts it
        return
    if record.status is not Status.PENDING:  # it finished meanwhile: report that
        try:
            value, error = recorded_outcome(record), None
        except Exception as failure:
            value, error = None, failure
        finish(rt, run, record.status, value, error)
        return
    execute(rt, run, definition, record.inputs, steps, record.deadline_ms, waited,
            record.trace_context)


def execute(rt: Runtime, run: ActiveRun, definition: Definition, inputs: str | bytes,
            recorded: dict[int, StepRecord], deadline_ms: int | None,
            waited: bool = False, trace_context: str | None = None) -> None:
    """Run a claimed workflow in this thread to its end (or to an interruption).
    `waited`: the caller waits for the outcome (a direct call), so it is committed at once
    instead of lingering for the next batch. With OpenTelemetry, this execution is a span
    under the run's journaled `trace_context` (engine/otel.py)."""
    tel = rt.telemetry
    handle = None if tel is None else \
        tel.begin_run(run.workflow_id, definition.name, trace_context, len(recorded))
    if tel is None or handle is None:
        _execute(rt, run, definition, inputs, recorded, deadline_ms, waited, _ignore)
        return
    ended = [False]

    def outcome(what: str, error: BaseException | None) -> None:  # once, from any thread
        if not ended[0]:
            ended[0] = True
            tel.close(handle[0], what, error)

    try:
        _execute(rt, run, definition, inputs, recorded, deadline_ms, waited, outcome)
    except BaseException:
        outcome("interrupted", None)
        raise
    finally:
        tel.detach(handle)


def _ignore(what: str, error: BaseException | None) -> None:
    pass


def _execute(rt: Runtime, run: ActiveRun, definition: Definition, inputs: str | bytes,
             recorded: dict[int, StepRecord], deadline_ms: int | None, waited: bool,
             outcome: Callable[[str, BaseException | None], None]) -> None:
    """execute's work. `outcome(what, error)` is told once how this execution ended: the
    status recorded (once durable), "suspended", or "interrupted: REASON"."""
    context = RunContext(rt, definition, run.workflow_id, recorded, deadline_ms)
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
        outcome(f"interrupted: {stop.reason.value}", None)
        _interrupted(rt, run, definition, stop)
        return
    except Suspended as pause:
        outcome("suspended", None)
        run.context = None  # before the claim is released: see ActiveRuns.stop_all
        _suspend(rt, run, definition, pause.wake_ms)
        return
    except Exception as failure:
        status, error, output = Status.ERROR, failure, None
    except KeyboardInterrupt:  # Ctrl-C in a caller's thread: the run stays PENDING
        run.context = None
        finish(rt, run, Status.PENDING, None, EngineClosedError(rt.path))
        raise
    except BaseException as stop:  # SystemExit & co from user code: its failure, recorded
        status, output = Status.ERROR, None
        error = AbortedError(definition.name, repr(stop))
        error.__cause__ = stop
    finally:
        current_run.reset(token)
        if run.context is context:  # (a run resumed at once already runs in another context)
            run.context = None
    try:  # the last step's record: durable before the outcome, and before the lane goes on
        flush(context)
    except Interrupted as stop:
        outcome(f"interrupted: {stop.reason.value}", None)
        _interrupted(rt, run, definition, stop)
        return
    if context.fatal is not None:  # a determinism error the workflow tried to swallow
        status, error, output, value = Status.ERROR, context.fatal, None, None
    crashpoints.hit("before_outcome")
    stored_error = codec.encode_error(error) if error is not None else None
    if status is Status.ERROR:
        log.warning("workflow %s (%s) failed: %s", run.workflow_id, definition.name,
                    codec.describe(error))

    def durable(failure: BaseException | None, applied: bool = True) -> None:
        if failure is not None:
            if isinstance(failure, JournalError) and not rt.closed:
                # Its steps are all recorded: trying it again replays them and records the
                # outcome; the runs behind it in its lane cannot overtake any of its effects.
                outcome("interrupted: journal failure", failure)
                _retry_after_journal_failure(rt, run, definition, failure, hold_lane=False)
                return
            outcome("interrupted: journal failure", failure)
            log.error("workflow %s: could not record its outcome: %s; it stays PENDING "
                      "and resumes on the next start", run.workflow_id, failure)
            finish(rt, run, Status.PENDING, None, failure)
        elif not applied:  # cancelled while it ran: cancellation wins, unless resumed since
            outcome(Status.CANCELLED.value, None)
            _cancelled(rt, run, definition, first_in_lane=False)
        else:
            crashpoints.hit("after_outcome")
            outcome(status.value, error)
            _count_finished(rt, definition, status)
            finish(rt, run, status, value, error)

    try:
        rt.journal.finish_workflow(run.workflow_id, status, output, stored_error,
                                   rt.clock.now_ms(), on_durable=durable, urgent=waited)
    except Exception as failure:  # the journal is closed or unusable
        durable(failure)


def _suspend(rt: Runtime, run: ActiveRun, definition: Definition, wake_ms: int) -> None:
    """A long durable sleep: release this thread; a timer resumes the run by replay. A run
    of a lane (a Kafka partition) keeps its lane while it sleeps, so the runs behind it wait
    and order holds."""
    rt.journal.set_not_before(run.workflow_id, wake_ms)
    if rt.closed:  # the engine is closing: no timer will wake it; the next engine will
        finish(rt, run, Status.PENDING, None, EngineClosedError(rt.path))
        return
    _again(rt, run, definition, keep_lane=True, at_ms=wake_ms)


def _again(rt: Runtime, run: ActiveRun, definition: Definition, keep_lane: bool,
           at_ms: int | None = None) -> str | None:
    """Run a claimed run again by replay (now, or at `at_ms`), from a fresh task. With
    `keep_lane`, the lane this thread runs stays held for it, and the run goes first in it
    when it comes back. Returns the lane held, if any."""
    run.context = None
    rt.runs.unclaim(run)
    lane = rt.pool.hold_current_lane() if keep_lane else None
    task = _Task(rt, run, definition, None, None)

    def back() -> None:
        if lane is None:
            rt.pool.submit(task)
        else:
            rt.pool.release(lane, task)

    if at_ms is None:
        back()
    else:
        rt.timers.at(at_ms, back)
    return lane


def _interrupted(rt: Runtime, run: ActiveRun, definition: Definition,
                 stop: Interrupted) -> None:
    if stop.reason is StopReason.TIMED_OUT:
        error = WorkflowCancelledError(run.workflow_id, "timed out")
        log.warning("workflow %s timed out and was cancelled", run.workflow_id)
        rt.journal.finish_workflow(
            run.workflow_id, Status.CANCELLED, None, codec.encode_error(error),
            rt.clock.now_ms(),
            on_durable=lambda failure, _: finish(
                rt, run, _count_finished(rt, definition, Status.CANCELLED)
                if failure is None else Status.PENDING, None,
                error if failure is None else failure))
    elif stop.reason is StopReason.CANCELLED:  # unless resumed before it reached the boundary
        _cancelled(rt, run, definition, first_in_lane=True)
    elif stop.reason is StopReason.JOURNAL_FAILURE and not rt.closed:
        _retry_after_journal_failure(rt, run, definition, stop.cause, hold_lane=True)
    else:  # shutdown: leave it PENDING for the next start
        finish(rt, run, Status.PENDING, None, stop.cause or EngineClosedError(rt.path))


def _cancelled(rt: Runtime, run: ActiveRun, definition: Definition,
               first_in_lane: bool) -> None:
    """A run stopped (or whose outcome was refused) because it was cancelled. If it was resumed
    since (the journal says PENDING again), it goes on by replay (first in its lane, when it
    stopped at a boundary); else it ends CANCELLED."""
    with rt.runs.operator_lock:  # against a resume deciding at the same time
        record = rt.journal.get_workflow(run.workflow_id)
        if record is None or record.status is not Status.PENDING:
            finish(rt, run, _count_finished(rt, definition, Status.CANCELLED), None,
                   WorkflowCancelledError(run.workflow_id))
            return
        log.info("workflow %s was resumed before it stopped; it goes on", run.workflow_id)
        _again(rt, run, definition, keep_lane=first_in_lane)


def _retry_after_journal_failure(rt: Runtime, run: ActiveRun, definition: Definition,
                                 cause: BaseException | None, hold_lane: bool) -> None:
    """The journal could not record part of a run (disk full, its write lock held elsewhere):
    try the run again, by replay, after a capped exponential backoff, while it keeps its lane
    (the runs behind it wait, so order holds) and its waiters keep waiting. No restart."""
    run.journal_failures += 1
    delay = backoff.delay(JOURNAL_RETRY_FIRST, 2.0, JOURNAL_RETRY_CAP, run.journal_failures)
    lane = _again(rt, run, definition, hold_lane, rt.clock.now_ms() + int(delay * 1000))
    log.warning("workflow %s: the journal could not record it (%s); trying it again in %.1fs%s",
                run.workflow_id, codec.describe(cause), delay,
                f" (lane {lane} waits for it)" if lane else "")


def _count_finished(rt: Runtime, definition: Definition, status: Status) -> Status:
    """Count an outcome this engine recorded (the eoflow.runs.finished metric)."""
    if rt.telemetry is not None:
        rt.telemetry.run_finished(definition.name, status.value)
    return status


def finish(rt: Runtime, run: ActiveRun, status: Status, value: object,
           error: BaseException | None) -> None:
    """Release a run's waiters with its (durable) outcome."""
    rt.runs.forget(run)
    run.resolve(status, value, error)
    rt.slot_opened()  # the outcome is durable
