"""@workflow, @step and @transaction: register a definition and wrap the function.

The wrapper decides at call time what a call means:
- a workflow called inside a workflow is a child run with a deterministic id; called elsewhere it
  runs durably on the active engine (and refuses to run with none);
- a step or transaction called inside a workflow is replayed or run and recorded; called
  elsewhere it runs once, unjournaled (a transaction still gets its SQLite transaction).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from eoflow.engine import starts
from eoflow.engine.context import (
    active_runtime,
    current_db,
    current_run,
    new_workflow_id,
    take_workflow_id,
)
from eoflow.engine.executor import call_step, call_transaction, run_plain_transaction
from eoflow.engine.registry import REGISTRY, Definition, Kind, RetryPolicy
from eoflow.errors import ContextError, DefinitionError, NoEngineError

F = TypeVar("F", bound=Callable[..., Any])


def _register(definition: Definition, call: Callable[..., Any]) -> Any:
    fn = definition.fn
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise DefinitionError(definition.name, (
            f"is an async function; eoflow runs plain functions only (a {definition.kind.value}"
            " may not be `async def` yet): make it a `def`, and call async code from it with "
            "asyncio.run(...)"))
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
                return starts.call_child(run, definition, args, kwargs)
            runtime = active_runtime()
            if runtime is None:
                raise NoEngineError(definition.name)
            wid = take_workflow_id() or new_workflow_id()
            return starts.call(runtime, definition, wid, args, kwargs)

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
            runtime = active_runtime()
            if runtime is None:
                raise ContextError(
                    f"transaction {definition.name!r} needs a running eoflow engine for its "
                    "database; open one first (`with eoflow.Engine(...):`)")
            return run_plain_transaction(runtime, definition, args, kwargs)

        return _register(definition, call)  # type: ignore[no-any-return]

    return decorate
