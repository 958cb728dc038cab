"""Definitions: what the decorators register. No runtime state lives here.

A workflow is found again after a crash by its *name*, so the name must be stable across runs:
by default it is the function's qualified name (`process`, `Shop.process`), independent of how
the app module was imported (`eoflow run app.py`, `python -m app`, a test).
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from eoflow.engine import backoff
from eoflow.errors import ConfigError, DefinitionError

V = TypeVar("V")


class Kind(str, enum.Enum):
    WORKFLOW = "workflow"
    STEP = "step"
    TRANSACTION = "transaction"


@dataclass(frozen=True)
class RetryPolicy:
    """Step retries: attempt n (from 1) waits retry_interval * backoff**(n-1), capped."""

    max_attempts: int = 1
    retry_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts", f"must be at least 1, got {self.max_attempts}")
        if self.retry_interval < 0 or self.max_interval < 0:
            raise ConfigError("retry_interval", "must not be negative")
        if self.backoff < 1:
            raise ConfigError("backoff", f"must be at least 1.0, got {self.backoff}")

    def delay(self, attempt: int) -> float:
        return backoff.delay(self.retry_interval, self.backoff, self.max_interval, attempt)


@dataclass
class Definition:
    """One decorated function. Kafka decorators add `consumers` after registration."""

    kind: Kind
    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_recovery_attempts: int = 50
    timeout: float | None = None
    consumers: list[Any] = field(default_factory=list)

    def deadline(self, now_ms: int) -> int | None:
        """When a run started at `now_ms` times out (None without a timeout)."""
        return None if self.timeout is None else now_ms + int(self.timeout * 1000)

    @property
    def source(self) -> str:
        code = getattr(self.fn, "__code__", None)
        return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(self.fn)


class DefinitionStore(Protocol):
    """A process-wide table filled by decorators at import time (workflows, Kafka consumers,
    schedules, queues). Tests and tools isolate them with `isolated_definitions`."""

    def snapshot(self) -> object: ...
    def restore(self, state: object) -> None: ...


STORES: list[DefinitionStore] = []


@contextlib.contextmanager
def isolated_definitions() -> Iterator[None]:
    """Definitions made inside the block are forgotten when it ends (all stores)."""
    states = [(store, store.snapshot()) for store in STORES]
    try:
        yield
    finally:
        for store, state in states:
            store.restore(state)


class DictStore(Generic[V]):
    """A named table of definitions under a lock, that can be snapshotted and restored."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, V] = {}
        STORES.append(self)

    def snapshot(self) -> object:
        with self.lock:
            return dict(self.items)

    def restore(self, state: object) -> None:
        assert isinstance(state, dict)
        with self.lock:
            self.items.clear()
            self.items.update(state)

    def values(self) -> list[V]:
        with self.lock:
            return list(self.items.values())

    def get(self, name: str) -> V | None:
        with self.lock:
            return self.items.get(name)


class Registry:
    """Workflows by name, so recovery can find the code of a run recorded by an earlier process;
    and the app's start hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workflows: dict[str, Definition] = {}
        self._functions: dict[tuple[str, str], Definition] = {}  # every kind: for versions.py
        self.start_hooks: list[Callable[[], Any]] = []
        STORES.append(self)

    def snapshot(self) -> object:
        with self._lock:
            return dict(self._workflows), dict(self._functions), list(self.start_hooks)

    def restore(self, state: object) -> None:
        assert isinstance(state, tuple)
        workflows, functions, hooks = state
        with self._lock:
            self._workflows = dict(workflows)
            self._functions = dict(functions)
            self.start_hooks[:] = hooks

    def add(self, definition: Definition) -> None:
        if definition.kind is not Kind.WORKFLOW:
            with self._lock:
                self._functions[(definition.kind.value, definition.name)] = definition
            return
        with self._lock:
            known = self._workflows.get(definition.name)
            if known is not None and known.source != definition.source:
                raise DefinitionError(
                    definition.name,
                    f"a different workflow with this name is defined at {known.source}; "
                    "give one of them another name with @workflow(name=...)",
                )
            self._workflows[definition.name] = definition
            self._functions[(definition.kind.value, definition.name)] = definition

    def workflow(self, name: str) -> Definition | None:
        with self._lock:
            return self._workflows.get(name)

    def workflows(self) -> list[Definition]:
        with self._lock:
            return list(self._workflows.values())

    def functions(self) -> list[Definition]:
        """Every workflow, step and transaction defined so far."""
        with self._lock:
            return list(self._functions.values())


# Definitions are global like a Flask blueprint: importing the app registers them. Engines read
# them; they never hold runtime state.
REGISTRY = Registry()


def definition_of(fn: Any) -> Definition:
    definition = getattr(fn, "__eoflow__", None)
    if not isinstance(definition, Definition):
        name = getattr(fn, "__qualname__", repr(fn))
        raise DefinitionError(name, "is not an eoflow workflow, step or transaction")
    return definition


def require_workflow(definition: Definition) -> Definition:
    """`definition`, if it is a workflow's; else a DefinitionError saying what it is."""
    if definition.kind is not Kind.WORKFLOW:
        raise DefinitionError(definition.name, f"is a {definition.kind.value}, not a workflow")
    return definition


def on_start(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run `fn()` when `eoflow run` has opened the engine, before consumers start (create
    tables, check configuration). Transactions and workflows can be called from it."""
    if fn not in REGISTRY.start_hooks:
        REGISTRY.start_hooks.append(fn)
    return fn
