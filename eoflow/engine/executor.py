"""Replay-or-run: how a step or transaction call inside a workflow becomes durable.

Each call inside a workflow takes the next step number. If the journal holds a record for that
number, the call returns the recorded output (or raises the recorded error) without running; a
record with another name is a determinism error. Otherwise the function runs, and its outcome is
recorded durably before the workflow does anything outside the journal.

A step's record is carried, not written at once: if the workflow's next call is a @transaction
in the journal's own file, the transaction's commit writes the step's record with it (one
commit for both: nothing outside the file saw the step's output in between). Any other next
call, and the end of the run, first writes the carried record and waits for it, as before.
A crash before that commit loses both, and the step runs again on replay, as a step does when
a crash comes before its record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from eoflow.engine import crashpoints
from eoflow.engine.active import StopReason
from eoflow.engine.context import Interrupted, RunContext, current_db
from eoflow.engine.registry import Definition
from eoflow.engine.runtime import Runtime
from eoflow.errors import (
    DeterminismError,
    JournalError,
    SerializationError,
    StepRetriesExhaustedError,
)
from eoflow.journal import codec
from eoflow.journal.records import StepKind, StepRecord

log = logging.getLogger("eoflow.engine")
T = TypeVar("T")


def encode_value(function: str, what: str, value: Any) -> str:
    """JSON for `value`, or a SerializationError naming the function and the type."""
    try:
        return codec.encode(value)
    except codec.Unserializable as error:
        raise SerializationError(function, what, error.type_name) from None


def encode_inputs(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return encode_value(name, "an input", {"args": list(args), "kwargs": kwargs})


def decode_inputs(inputs: str | bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    data = codec.decode(inputs)
    return tuple(data["args"]), dict(data["kwargs"])


def replayed(run: RunContext, number: int, name: str, kind: StepKind) -> StepRecord | None:
    """The record of step `number`, checked against the call being made now."""
    record = run.recorded.pop(number, None)
    if record is None:
        return None
    if record.name != name or record.kind is not kind:
        # The patch involved, if any: the one recorded here, or the one called here.
        patch = record.name if record.kind is StepKind.PATCH else \
            name if kind is StepKind.PATCH else None
        run.fatal = DeterminismError(run.workflow_id, number, record.name, name, patch)
        raise run.fatal
    return record


def journal_step(run: RunContext, step: StepRecord) -> None:
    """Record a step durably; if the journal fails, stop the run (the runner retries it)."""
    journaled(run, f"step {step.step} ({step.name})", run.runtime.journal.record_step, step)


def journaled(run: RunContext, what: str, write: Callable[..., T], *args: Any) -> T:
    """`write(*args)` on the journal for a run: a JournalError stops the run at once, where
    user code cannot swallow it, and the runner tries the run again once the journal writes
    (runner._retry_after_journal_failure)."""
    try:
        return write(*args)
    except JournalError as error:
        log.error("workflow %s: cannot record %s: %s", run.workflow_id, what, error)
        raise Interrupted(StopReason.JOURNAL_FAILURE, error) from error


def outcome_of(record: StepRecord) -> Any:
    if record.error is not None:
        raise codec.decode_error(record.error)
    return codec.decode(record.output)


def begin(run: RunContext, name: str, kind: StepKind,
          carries: bool = False) -> tuple[int, StepRecord | None]:
    """Start a journaled call at a step boundary: its number, and its record if replaying.
    Unless the call `carries` the previous step's record into its own commit, that record is
    written first."""
    if not carries:
        flush(run)
    try:
        run.check_boundary()
    except BaseException:
        flush(run)  # stopping here: the step that ran stays recorded
        raise
    number = run.next_step()
    return number, replayed(run, number, name, kind)


def flush(run: RunContext) -> None:
    """Write the carried step record, if any, and wait until it is durable."""
    record, run.carry = run.carry, None
    if record is not None:
        journal_step(run, record)


def call_step(run: RunContext, definition: Definition, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    number, record = begin(run, definition.name, StepKind.STEP)
    if record is not None:
        return outcome_of(record)
    crashpoints.hit("before_step")
    rt = run.runtime
    tel = rt.telemetry
    span = None if tel is None else tel.begin_step(definition.name, "step", number)
    started = rt.clock.now_ms()
    tries = [0]  # attempts made, also when interrupted in a retry's wait
    failure: BaseException | None = None
    outcome = "interrupted"
    try:
        attempt, failure, output, value = _attempts(run, definition, args, kwargs, number, span,
                                                    tries)
        outcome = "ERROR" if failure is not None else "SUCCESS"
    finally:
        if tel is not None:
            if span is not None:
                tel.end(span, outcome, failure, tries[0])
            if outcome != "interrupted":  # a step cut short has no duration of its own
                tel.step_done(definition.name, "step", (rt.clock.now_ms() - started) / 1000,
                              tries[0])
    ended = rt.clock.now_ms()
    if failure is None:
        run.carry = StepRecord(run.workflow_id, number, definition.name, StepKind.STEP, output,
                               None, attempt, started, ended)
        crashpoints.hit("after_step")
        return value
    journal_step(run, StepRecord(
        run.workflow_id, number, definition.name, StepKind.STEP, None,
        codec.encode_error(failure), attempt, started, ended))
    crashpoints.hit("after_step")
    raise failure


def _attempts(run: RunContext, definition: Definition, args: tuple[Any, ...],
              kwargs: dict[str, Any], number: int, span: Any, tries: list[int]
              ) -> tuple[int, BaseException | None, str | None, Any]:
    """Run a step under its retry policy: (attempts, its failure or None, output, value);
    `tries[0]` counts the attempts as they start."""
    rt = run.runtime
    policy = definition.retry
    attempt = 0
    while True:
        attempt += 1
        tries[0] = attempt
        failure: BaseException | None = None
        run.in_step = True
        try:
            value = definition.fn(*args, **kwargs)
            output = encode_value(definition.name, "the return value", value)
        except SerializationError as error:
            failure = error
        except Exception as error:
            failure = error
        finally:
            run.in_step = False
        if failure is None:
            return attempt, None, output, value
        if isinstance(failure, SerializationError):
            return attempt, failure, None, None
        if attempt >= policy.max_attempts:
            if policy.max_attempts > 1:
                exhausted = StepRetriesExhaustedError(definition.name, attempt, str(failure))
                exhausted.__cause__ = failure
                failure = exhausted
            return attempt, failure, None, None
        delay = policy.delay(attempt)
        log.warning("workflow %s: step %d %s failed (attempt %d of %d), retrying in %.2fs: %s",
                    run.workflow_id, number, definition.name, attempt, policy.max_attempts,
                    delay, codec.describe(failure))
        if span is not None and rt.telemetry is not None:
            rt.telemetry.retried(span, attempt, failure)
        if rt.clock.wait(delay, run.wakeup):
            run.check_boundary()


def call_transaction(run: RunContext, definition: Definition, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    rt = run.runtime
    number, record = begin(run, definition.name, StepKind.TRANSACTION,
                           carries=rt.txstore.in_journal)
    if record is not None:
        flush(run)
        return outcome_of(record)
    crashpoints.hit("before_step")
    fresh: dict[str, Any] = {}
    carried, run.carry = run.carry, None

    def work(conn: Any) -> str:
        token = current_db.set(conn)
        run.in_transaction = True
        try:
            value = definition.fn(*args, **kwargs)
            output = encode_value(definition.name, "the return value", value)
        except BaseException as error:
            fresh["error"] = error
            raise
        finally:
            run.in_transaction = False
            current_db.reset(token)
        fresh["value"] = value
        crashpoints.hit("in_transaction")
        return output

    started = rt.clock.now_ms()
    tel = rt.telemetry
    span = None if tel is None else tel.begin_step(definition.name, "transaction", number)
    result = "interrupted"
    try:
        outcome = rt.txstore.run_transaction(
            run.workflow_id, number, definition.name, work, started, rt.clock.now_ms,
            carried=carried)
        result = ("ERROR" if outcome.error is not None else "SUCCESS") if outcome.fresh \
            else "reused"  # committed before (a race, or a crash before its record)
    except JournalError as error:
        log.error("workflow %s: transaction %d (%s) could not commit: %s", run.workflow_id,
                  number, definition.name, error)
        raise Interrupted(StopReason.JOURNAL_FAILURE, error) from error
    finally:
        if tel is not None:
            if span is not None:
                tel.end(span, result, fresh.get("error"), 1)
            if result != "interrupted":
                tel.step_done(definition.name, "transaction",
                              (rt.clock.now_ms() - started) / 1000, 1)
    if not rt.txstore.in_journal:
        journal_step(run, StepRecord(
            run.workflow_id, number, definition.name, StepKind.TRANSACTION, outcome.output,
            outcome.error, 1, started, rt.clock.now_ms()))
    crashpoints.hit("after_step")
    if outcome.fresh:
        if outcome.error is not None:
            # The function's own exception; or, when it returned, what the store refused
            # after it (e.g. TransactionAbortedError), as recorded.
            raise fresh.get("error") or codec.decode_error(outcome.error)
        return fresh["value"]
    log.info("workflow %s: transaction %d %s was already committed; reusing its outcome",
             run.workflow_id, number, definition.name)
    if outcome.error is not None:
        raise codec.decode_error(outcome.error)
    return codec.decode(outcome.output)


def run_plain_transaction(runtime: Runtime, definition: Definition, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> Any:
    """A transaction called outside any workflow: one SQLite transaction, not journaled."""

    def work(conn: Any) -> Any:
        token = current_db.set(conn)
        try:
            return definition.fn(*args, **kwargs)
        finally:
            current_db.reset(token)

    return runtime.txstore.run_plain(work)
