"""The one error hierarchy of eoflow.

Every error eoflow raises on purpose is an `EoflowError`. Each carries structured fields
(workflow_id, step, path, ...) as attributes and a one-line message that names the thing at fault
and the fix, so the CLI can print `str(error)` alone and a program can branch on the fields.

The message is always `args[0]`: errors are rebuilt from the journal by restoring `args` and the
attributes, never by calling `__init__` again.
"""

from __future__ import annotations


class EoflowError(Exception):
    """Root of every error eoflow raises deliberately."""


# -- definitions, configuration and context ---------------------------------------------------


class ConfigError(EoflowError):
    """An option or setting has a value eoflow cannot use."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {problem}")


class DefinitionError(EoflowError):
    """A decorator was used in a way eoflow cannot honour."""

    def __init__(self, function: str, problem: str) -> None:
        self.function = function
        super().__init__(f"{function}: {problem}")


class AppLoadError(EoflowError):
    """An application file or module could not be loaded."""

    def __init__(self, app: str, problem: str) -> None:
        self.app = app
        super().__init__(f"cannot load app {app!r}: {problem}")


class ContextError(EoflowError):
    """An eoflow function was called where it has no meaning (e.g. db() outside a transaction)."""


class NoEngineError(ContextError):
    """A workflow was called while no engine is running: it would not be durable."""

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(
            f"workflow {function!r} was called with no eoflow engine running; "
            "open one first (`with eoflow.Engine(journal=...):`) or use `eoflow run`"
        )


class EngineClosedError(EoflowError):
    """The engine is closed or closing and accepts no new work."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"the eoflow engine on {path!r} is closed; open a new Engine to run work")


class SerializationError(EoflowError):
    """A value could not be stored as JSON in the journal."""

    def __init__(self, function: str, what: str, type_name: str) -> None:
        self.function = function
        self.what = what
        self.type_name = type_name
        super().__init__(
            f"{function!r}: cannot journal {what} of type {type_name!r}; use JSON data, bytes, "
            "tuples, sets, datetimes, Decimal, UUID or dataclasses of those"
        )


# -- workflow outcomes -----------------------------------------------------------------------


class DeterminismError(EoflowError):
    """Replay met a step whose recorded name differs from the one called now."""

    def __init__(self, workflow_id: str, step: int, recorded: str, called: str,
                 patch: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.step = step
        self.recorded = recorded
        self.called = called
        self.patch = patch  # the patch involved, if any (engine/patches.py)
        advice = ("keep the step order of running workflows stable (guard a change with "
                  "eoflow.patched()), or fork the workflow") if patch is None else (
            f"look at patch {patch!r}: a run that recorded it needs eoflow.patched({patch!r}) "
            f"or eoflow.deprecated_patch({patch!r}) at that point of the code")
        super().__init__(
            f"workflow {workflow_id!r} is not deterministic: step {step} was recorded as "
            f"{recorded!r} but the code now calls {called!r}; {advice}"
        )


class WorkflowConflictError(EoflowError):
    """A workflow id is already used by a run of another workflow function."""

    def __init__(self, workflow_id: str, existing: str, requested: str,
                 fix: str = "choose another workflow id") -> None:
        self.workflow_id = workflow_id
        self.existing = existing
        self.requested = requested
        whose = (f"a run of {existing!r}" if existing == requested
                 else f"a run of {existing!r}, not {requested!r}")
        super().__init__(f"workflow id {workflow_id!r} already belongs to {whose}; {fix}")


class WorkflowNotFoundError(EoflowError):
    """No workflow with this id is in the journal."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r} in the journal")


class WorkflowStateError(EoflowError):
    """An operation does not apply to a workflow in its current status."""

    def __init__(self, workflow_id: str, status: str, operation: str) -> None:
        self.workflow_id = workflow_id
        self.status = status
        self.operation = operation
        super().__init__(f"cannot {operation} workflow {workflow_id!r}: its status is {status}")


class AbortedError(EoflowError):
    """User code raised SystemExit (or another BaseException that is not an Exception): eoflow
    records it as that code's failure, instead of letting it end a worker thread in silence."""

    def __init__(self, name: str, raised: str) -> None:
        self.name = name
        self.raised = raised
        super().__init__(f"{name!r} raised {raised}, which eoflow records as its failure; "
                         "raise an Exception instead to fail it, or let it return")


class TransactionAbortedError(EoflowError):
    """A @transaction function caught a database error and went on, but PostgreSQL had already
    aborted its transaction: nothing it did after that could take effect."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{name!r} caught a database error and went on, but the database had aborted its "
            "transaction; let the error propagate (eoflow records the failure), or wrap the "
            "statement that may fail in `with eoflow.db().transaction():` (a savepoint)")


class WorkflowCancelledError(EoflowError):
    """The workflow was cancelled (or timed out) and stopped at a step boundary."""

    def __init__(self, workflow_id: str, reason: str = "cancelled") -> None:
        self.workflow_id = workflow_id
        self.reason = reason
        super().__init__(
            f"workflow {workflow_id!r} was {reason}; resume it with "
            f"`eoflow workflows resume {workflow_id}`"
        )


class WorkflowParkedError(EoflowError):
    """The workflow kept crashing the process and was parked by recovery."""

    def __init__(self, workflow_id: str, attempts: int) -> None:
        self.workflow_id = workflow_id
        self.attempts = attempts
        super().__init__(
            f"workflow {workflow_id!r} was parked after {attempts} recovery attempts; fix the "
            f"cause, then `eoflow workflows resume {workflow_id}`"
        )


class StepRetriesExhaustedError(EoflowError):
    """A step failed on every allowed attempt; the last error is its `__cause__`."""

    def __init__(self, step: str, attempts: int, last_error: str) -> None:
        self.step_name = step
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"step {step!r} failed {attempts} times; last error: {last_error}")


class RecordedError(EoflowError):
    """An error replayed from the journal whose original type is not importable here."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")


class UndecodableValueError(EoflowError):
    """A value in the journal cannot be decoded (a malformed or hand-edited record)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"a journaled value cannot be decoded: {problem}")


class AwaitTimeoutError(EoflowError, TimeoutError):
    """Waiting for a workflow's result (or an event, or a message) took longer than allowed."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what = what
        self.timeout = timeout
        super().__init__(f"timed out after {timeout:g}s waiting for {what}")


# -- the journal -----------------------------------------------------------------------------


class JournalError(EoflowError):
    """The journal file cannot be used."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"journal {path!r}: {problem}")


class JournalLockedError(JournalError):
    """Another engine owns the journal."""

    def __init__(self, path: str, owner: str) -> None:
        self.owner = owner
        super().__init__(
            path,
            f"in use by another eoflow engine ({owner}); stop it, or give this one its own "
            "--journal (readers such as `eoflow status` need no lock)",
        )


class JournalFormatError(JournalError):
    """The file is not an eoflow journal, is corrupt, or comes from a newer eoflow."""


class JournalWriteError(JournalError):
    """A write to the journal failed (read-only file, full disk, I/O error)."""


class ExecutorFencedError(JournalError):
    """This engine's lease expired and another executor took its runs over: it was paused or
    cut off from the journal for longer than the lease. Its writes are refused; it stops."""

    def __init__(self, path: str, executor_id: str, status: str) -> None:
        self.executor_id = executor_id
        super().__init__(path, (
            f"executor {executor_id} is {status}: its lease ran out (this process was paused "
            "or cut off from the journal for longer than --lease) and another executor took "
            "its runs over, so it may not write any more; start the app again (a longer "
            "--lease rides out longer pauses)"))


class JournalUnavailableError(JournalError):
    """The journal's database server cannot be reached, or the connection to it was lost."""


# -- Kafka -----------------------------------------------------------------------------------


class KafkaConsumeError(EoflowError):
    """A Kafka client could not be set up, or an operation on the brokers failed."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"kafka {where}: {problem}")


class UndecodableRecordError(KafkaConsumeError):
    """The Kafka client cannot decode a record (e.g. a header key that is not UTF-8): the
    consumer quarantines it and goes on past it."""

    def __init__(self, where: str, topic: str, partition: int, offset: int,
                 problem: str, raw: bytes | None = None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self._raw = raw  # kept apart from the stored error's attributes: it goes in `raw`
        super().__init__(where, f"cannot decode the record at {topic}/{partition} offset "
                                f"{offset}: {problem}")

    @property
    def raw(self) -> bytes | None:
        """The record batch holding the record, in Kafka's format, when it could be fetched."""
        return self._raw


class BrokerUnavailableError(KafkaConsumeError):
    """No broker answered at the configured addresses."""

    def __init__(self, brokers: str, detail: str) -> None:
        self.brokers = brokers
        super().__init__(
            brokers, f"no broker reachable ({detail}); check --brokers / EOFLOW_KAFKA_BROKERS "
            "and that the broker is up (`eoflow broker` starts one for local use)")


class OffsetCommitError(KafkaConsumeError):
    """Offsets could not be committed (a rebalance, or the brokers are unreachable)."""


class QuarantineError(EoflowError):
    """A quarantined message cannot be retried."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"quarantined message {key!r}: {problem}")


class DedupError(EoflowError):
    """A queue already holds a live run with this dedup id."""

    def __init__(self, queue: str, dedup_id: str, existing: str) -> None:
        self.queue = queue
        self.dedup_id = dedup_id
        self.existing = existing
        super().__init__(
            f"queue {queue!r}: dedup id {dedup_id!r} already has a live run ({existing!r}); "
            "wait for it to finish, or use another dedup id")


class TopicRecreatedError(EoflowError):
    """A topic's broker id changed: it was deleted and created again (or its broker lost its
    data), so its offsets start again and may collide with the ones the journal recorded."""

    def __init__(self, group_id: str, topic: str, recorded: str, current: str,
                 journal: str) -> None:
        self.group_id = group_id
        self.topic = topic
        super().__init__(
            f"kafka group {group_id!r}: topic {topic!r} was recreated (its id was {recorded}, "
            f"it is {current}): its offsets started again, and eoflow will not guess which "
            "messages are new, so its consumer stopped; to consume the new topic from its "
            f"start, run `eoflow kafka restart-topic {topic} --group {group_id} --journal "
            f"{journal}`, then restart the app")
