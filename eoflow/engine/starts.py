"""Starting runs: record them durably, then run them on the pool or in the caller's thread.

Every run is created here (`create_runs`, which also refuses an id already used by another
workflow). A start is durable before it returns; starting an id that exists returns that run
and never runs it twice. Inside a workflow, a start is a child run whose id is recorded as a
step of the parent, so that replay re-attaches to the same child instead of starting another.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eoflow.engine import crashpoints, runner
from eoflow.engine.context import (
    RunContext,
    current_run,
    new_workflow_id,
    take_workflow_id,
)
from eoflow.engine.executor import (
    begin,
    encode_inputs,
    encode_value,
    journal_step,
    journaled,
)
from eoflow.engine.handle import WorkflowHandle, outcome_for_waiter, recorded_outcome
from eoflow.engine.registry import Definition
from eoflow.engine.runtime import Runtime
from eoflow.errors import ContextError, DedupError, WorkflowConflictError
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow, Status, StepKind, StepRecord

Call = tuple[tuple[Any, ...], dict[str, Any]]


def new_run(rt: Runtime, definition: Definition, workflow_id: str, inputs: str, now_ms: int,
            **fields: Any) -> NewWorkflow:
    """The record of a new run of `definition`, its timeout (if any) starting now; with
    OpenTelemetry, its start is a span whose context the run keeps (engine/otel.py)."""
    timeout_ms = None if definition.timeout is None else int(definition.timeout * 1000)
    trace = None if rt.telemetry is None else \
        rt.telemetry.start_context(workflow_id, definition.name)
    return NewWorkflow(workflow_id, definition.name, inputs, now_ms, timeout_ms=timeout_ms,
                       deadline_ms=definition.deadline(now_ms), trace_context=trace, **fields)


def create_runs(rt: Runtime, news: list[NewWorkflow], definitions: list[Definition],
                step: StepRecord | None = None) -> list[tuple[bool, Status]]:
    """Record runs durably (with a parent's CHILD `step`, if any): (created?, status) of
    each. An existing id of another workflow is a WorkflowConflictError."""
    results: list[tuple[bool, str, Status]] = []
    try:
        results = rt.journal.create_workflows(news, rt.clock.now_ms(), step)
    finally:  # a start span is sent only for a run it created
        if rt.telemetry is not None:
            rt.telemetry.settle([n.trace_context for n in news], [r[0] for r in results])
    out = []
    for new, definition, (created, name, status) in zip(news, definitions, results,
                                                        strict=True):
        if not created and name != definition.name:
            raise WorkflowConflictError(new.workflow_id, name, definition.name)
        out.append((created, status))
        if created and rt.telemetry is not None:
            rt.telemetry.run_started(definition.name)
    if any(created for created, _ in out):
        crashpoints.hit("after_start")
    return out


def start(rt: Runtime, definition: Definition, args: tuple[Any, ...], kwargs: dict[str, Any],
          workflow_id: str | None = None) -> WorkflowHandle:
    """Record a run and queue it on the pool; from a workflow of this engine, a child."""
    parent = current_run.get()
    if parent is not None and parent.runtime is rt and workflow_id is None:
        child_id, created, status, new = create_child(parent, definition, args, kwargs)
        return run_created(rt, definition, child_id, new, created, status, (args, kwargs))
    wid = workflow_id or take_workflow_id() or new_workflow_id()
    return launch(rt, [(definition, wid, args, kwargs)])[0]


def launch(rt: Runtime, calls: list[tuple[Definition, str, tuple[Any, ...], dict[str, Any]]],
           lane: str | None = None) -> list[WorkflowHandle]:
    """Record several runs in one durable transaction, then queue those not finished."""
    rt.check_open()
    now = rt.clock.now_ms()
    news = [new_run(rt, d, wid, encode_inputs(d.name, args, kwargs), now, lane=lane)
            for d, wid, args, kwargs in calls]
    outcomes = create_runs(rt, news, [call[0] for call in calls])
    return [run_created(rt, definition, wid, new, created, status, (args, kwargs), lane)
            for (definition, wid, args, kwargs), new, (created, status)
            in zip(calls, news, outcomes, strict=True)]


def run_created(rt: Runtime, definition: Definition, wid: str, new: NewWorkflow | None,
                created: bool, status: Status, call: Call,
                lane: str | None = None) -> WorkflowHandle:
    """After a start was recorded: queue the run on the pool unless it already finished;
    a fresh run gets the caller's arguments as they are."""
    if not created and status.terminal:
        return WorkflowHandle(rt, wid)
    if not created and status is Status.PENDING and runner.held_elsewhere(rt, wid):
        return WorkflowHandle(rt, wid)  # the handle reads the journal
    run = rt.runs.track(wid)
    if created:
        run.call = call
    if created or not runner.kept_held(rt, run, definition):
        runner.submit(rt, run, definition, new if created else None, lane)
    return WorkflowHandle(rt, wid, run)


def call(rt: Runtime, definition: Definition, wid: str, args: tuple[Any, ...],
         kwargs: dict[str, Any]) -> Any:
    """Create (or find) run `wid` and execute it in this thread unless it runs elsewhere."""
    rt.check_open()
    now = rt.clock.now_ms()
    new = new_run(rt, definition, wid, encode_inputs(definition.name, args, kwargs), now)
    created, status = create_runs(rt, [new], [definition])[0]
    return attach(rt, definition, wid, created, status, new, (args, kwargs))


def attach(rt: Runtime, definition: Definition, wid: str, created: bool, status: Status,
           new: NewWorkflow | None = None, call: Call | None = None) -> Any:
    """Return the result of run `wid`, executing it in this thread if no thread is."""
    if not created and status.terminal:
        record = rt.journal.get_workflow(wid)
        assert record is not None
        return recorded_outcome(record)
    if not created and status is Status.PENDING and runner.held_elsewhere(rt, wid):
        return WorkflowHandle(rt, wid).result()
    run = rt.runs.track(wid)
    # A run held behind older runs of its lane runs in its turn: then only wait for it.
    if (created or not runner.kept_held(rt, run, definition)) and rt.runs.claim(run):
        if created and new is not None:
            run.call = call
            runner.execute(rt, run, definition, new.inputs, {}, new.deadline_ms, waited=True,
                           trace_context=new.trace_context)
        else:
            runner.resume_claimed(rt, run, definition, waited=True)
    run.done.wait()
    return outcome_for_waiter(rt, run)


def call_child(run: RunContext, definition: Definition, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    """A workflow called from a workflow: a child run executed (or replayed) in this thread."""
    child_id, created, status, new = create_child(run, definition, args, kwargs)
    return attach(run.runtime, definition, child_id, created, status, new,
                  (args, kwargs) if created else None)


def create_child(run: RunContext, definition: Definition, args: tuple[Any, ...],
                 kwargs: dict[str, Any], **fields: Any
                 ) -> tuple[str, bool, Status, NewWorkflow | None]:
    """Record (or replay) the start of a child run from step `n` of `run`; its id is
    `{parent id}-{n}` unless set_workflow_id named it. Returns (id, created, status, new)."""
    if run.in_step or run.in_transaction:
        raise ContextError(f"workflow {definition.name!r} cannot be started inside a step or "
                           "transaction; start it from the workflow itself")
    rt = run.runtime
    number, record = begin(run, definition.name, StepKind.CHILD)
    if record is not None:
        if record.error is not None:  # the start was refused, and the workflow saw that
            raise codec.decode_error(record.error)
        child_id = codec.decode(record.output)
        child = rt.journal.get_workflow(child_id)
        assert child is not None, f"child {child_id} of {run.workflow_id} vanished"
        return child_id, False, child.status, None
    child_id = take_workflow_id() or f"{run.workflow_id}-{number}"
    now = rt.clock.now_ms()
    new = new_run(rt, definition, child_id, encode_inputs(definition.name, args, kwargs), now,
                  parent_id=run.workflow_id, **fields)
    if run.deadline_ms is not None and (new.deadline_ms is None
                                        or run.deadline_ms < new.deadline_ms):
        # A parent's deadline reaches its children (as in DBOS): when the parent times out,
        # the children it started time out with it instead of running on unobserved.
        new = dataclasses.replace(new, deadline_ms=run.deadline_ms)
    step_record = StepRecord(run.workflow_id, number, definition.name, StepKind.CHILD,
                             encode_value(definition.name, "a child id", child_id), None, 1,
                             now, now)
    try:
        created, status = journaled(run, f"the start of child {child_id}", create_runs, rt,
                                    [new], [definition], step_record)[0]
    except (DedupError, WorkflowConflictError) as refused:
        # A refusal is an outcome the workflow observes: journal it, so replay sees it too.
        journal_step(run, StepRecord(run.workflow_id, number, definition.name, StepKind.CHILD,
                                     None, codec.encode_error(refused), 1, now, now))
        raise
    return child_id, created, status, new
