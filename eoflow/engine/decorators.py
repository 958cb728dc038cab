"""@workflow, @step and @transaction: register a definition and wrap the function.

The wrapper decides at call time what a call means:
- a workflow called inside a workflow is a child run with a deterministic id; called elsewhere it
  runs durably on the active engine (and refuses to run with none);
- a step or transaction called inside a workflow is replayed or run and recorded; called
  elsewhere it runs once, unjournaled (a transaction still gets its SQLite transaction).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, overload

from eoflow.engine.context import (
    active_engine,
    current_db,
    current_run,
    new_workflow_id,
    take_workflow_id,
)
from eoflow.engine.executor import (
    begin,
    call_step,
    call_transaction,
    encode_value,
    run_plain_transaction,
)
from eoflow.engine.registry import REGISTRY, Definition, Kind, RetryPolicy
from eoflow.engine.runs import encode_inputs
from eoflow.errors import ContextError, NoEngineError
from eoflow.journal import codec
from eoflow.journal.records import NewWorkflow, StepKind, StepRecord

F = TypeVar("F", bound=Callable[..., Any])


def _register(definition: Definition, call: Callable[..., Any]) -> Any:
    fn = definition.fn
    wrapper: Any = functools.wraps(fn)(call)
    wrapper.__eoflow__ = definition
    REGISTRY.add(definition)
    return wrapper


@overload
def workflow(name: F) -> F: ...
@overload
def workflow(name: str | None = None, *, max_recovery_attempts: int = 50,
             timeout: float | None = None) -> Callable[[F], F]: ...
def workflow(name: Any = None, *, max_recovery_attempts: int = 50,
             timeout: float | None = None) -> Any:
    """Make a function a durable workflow. `timeout` (seconds) cancels runs that exceed it;
    `max_recovery_attempts` parks a run that crashes the process that many times in a row."""
    if callable(name):
        return workflow()(name)
    if timeout is not None and timeout <= 0:
        raise ContextError(f"workflow timeout must be positive, got {timeout}")

    def decorate(fn: F) -> F:
        definition = Definition(Kind.WORKFLOW, name or fn.__qualname__, fn,
                                max_recovery_attempts=max_recovery_attempts, timeout=timeout)

        def call(*args: Any, **kwargs: Any) -> Any:
            run = current_run.get()
            if run is not None:
                return call_child(run, definition, args, kwargs)
            engine = active_engine()
            if engine is None:
                raise NoEngineError(definition.name)
            wid = take_workflow_id() or new_workflow_id()
            return engine.call(definition, wid, args, kwargs)

        return _register(definition, call)  # type: ignore[no-any-return]

    return decorate


@overload
def step(name: F) -> F: ...
@overload
def step(name: str | None = None, *, max_attempts: int = 1, retry_interval: float = 1.0,
         backoff: float = 2.0, max_interval: float = 60.0) -> Callable[[F], F]: ...
def step(name: Any = None, *, max_attempts: int = 1, retry_interval: float = 1.0,
         backoff: float = 2.0, max_interval: float = 60.0) -> Any:
    """Make a function a journaled step, retried up to `max_attempts` times with exponential
    backoff (retry_interval * backoff**n seconds, at most max_interval)."""
    if callable(name):
        return step()(name)
    policy = RetryPolicy(max_attempts, retry_interval, backoff, max_interval)

    def decorate(fn: F) -> F:
        definition = Definition(Kind.STEP, name or fn.__qualname__, fn, retry=policy)

        def call(*args: Any, **kwargs: Any) -> Any:
            run = current_run.get()
            if run is None or run.in_step or run.in_transaction:
                return fn(*args, **kwargs)
            return call_step(run, definition, args, kwargs)

        return _register(definition, call)  # type: ignore[no-any-return]

    return decorate


@overload
def transaction(name: F) -> F: ...
@overload
def transaction(name: str | None = None) -> Callable[[F], F]: ...
def transaction(name: Any = None) -> Any:
    """Make a function an exactly-once SQLite transaction; `eoflow.db()` is its connection."""
    if callable(name):
        return transaction()(name)

    def decorate(fn: F) -> F:
        definition = Definition(Kind.TRANSACTION, name or fn.__qualname__, fn)

        def call(*args: Any, **kwargs: Any) -> Any:
            if current_db.get() is not None:  # nested: part of the enclosing transaction
                return fn(*args, **kwargs)
            run = current_run.get()
            if run is not None and not run.in_step:
                return call_transaction(run, definition, args, kwargs)
            engine = active_engine()
            if engine is None:
                raise ContextError(
                    f"transaction {definition.name!r} needs a running eoflow engine for its "
                    "database; open one first (`with eoflow.Engine(...):`)")
            return run_plain_transaction(engine, definition, args, kwargs)

        return _register(definition, call)  # type: ignore[no-any-return]

    return decorate


def call_child(run: Any, definition: Definition, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    """A workflow called from a workflow: a child run whose id is recorded as a step, so that
    replay re-attaches to the same child instead of starting another."""
    child_id, created, status, new = create_child(run, definition, args, kwargs)
    return run.engine.attach(definition, child_id, created, status, new,
                             (args, kwargs) if created else None)


def create_child(run: Any, definition: Definition, args: tuple[Any, ...],
                 kwargs: dict[str, Any], **fields: Any
                 ) -> tuple[str, bool, Any, NewWorkflow | None]:
    """Record (or replay) the start of a child run from step `n` of `run`; its id is
    `{parent id}-{n}` unless set_workflow_id named it. Returns (id, created, status, new)."""
    if run.in_step or run.in_transaction:
        raise ContextError(f"workflow {definition.name!r} cannot be started inside a step or "
                           "transaction; start it from the workflow itself")
    engine = run.engine
    number, record = begin(run, definition.name, StepKind.CHILD)
    if record is not None:
        child_id = codec.decode(record.output)
        child = engine.journal.get_workflow(child_id)
        assert child is not None, f"child {child_id} of {run.workflow_id} vanished"
        return child_id, False, child.status, None
    child_id = take_workflow_id() or f"{run.workflow_id}-{number}"
    now = engine.clock.now_ms()
    new = NewWorkflow(child_id, definition.name, encode_inputs(definition.name, args, kwargs),
                      now, parent_id=run.workflow_id, deadline_ms=definition.deadline(now),
                      **fields)
    step_record = StepRecord(run.workflow_id, number, definition.name, StepKind.CHILD,
                             encode_value(definition.name, "a child id", child_id), None, 1,
                             now, now)
    created, status = engine.create_runs([new], [definition], step_record)[0]
    return child_id, created, status, new
