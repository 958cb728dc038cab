"""What the journal holds, as plain frozen records. Values inside are JSON text (see codec)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(str, enum.Enum):
    """The life of a workflow run. Only PENDING and ENQUEUED runs are picked up by recovery."""

    ENQUEUED = "ENQUEUED"  # waiting in a queue for a free slot
    PENDING = "PENDING"  # started, not finished: recovery resumes it
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"  # cancelled or timed out; resumable
    PARKED = "PARKED"  # kept crashing the process; resumable after a fix

    @property
    def terminal(self) -> bool:
        return self not in (Status.ENQUEUED, Status.PENDING)


class StepKind(str, enum.Enum):
    STEP = "step"
    TRANSACTION = "transaction"
    CHILD = "child"  # a child workflow started from this step; output is the child's id
    SLEEP = "sleep"  # output is the wake-up time (ms since the epoch)
    SEND = "send"
    RECV = "recv"
    SET_EVENT = "set_event"
    GET_EVENT = "get_event"
    PATCH = "patch"  # eoflow.patched(): the run took the patch's code (engine/patches.py)


class Action(str, enum.Enum):
    """An operator's request to a running engine, left in the journal by the CLI."""

    CANCEL = "cancel"  # the journal says CANCELLED: stop the run at its next step boundary
    RESUME = "resume"  # the journal says PENDING again: run it
    RETRY_QUARANTINED = "retry_quarantined"  # apply a quarantined Kafka message again


@dataclass(frozen=True)
class NewWorkflow:
    """A run to create. `lane` orders runs that must not overlap (a Kafka partition)."""

    workflow_id: str
    name: str
    inputs: str | bytes  # JSON text (codec.encode), or packed with raw bytes (codec.pack)
    created_ms: int
    status: Status = Status.PENDING
    parent_id: str | None = None
    queue: str | None = None
    lane: str | None = None
    deadline_ms: int | None = None
    priority: int = 0
    dedup_id: str | None = None
    not_before_ms: int | None = None
    timeout_ms: int | None = None  # the deadline's distance; a resume starts it again
    trace_context: str | None = None  # a W3C traceparent: the span that started it (otel.py)


@dataclass(frozen=True)
class WorkflowRecord:
    workflow_id: str
    name: str
    status: Status
    inputs: str | bytes  # JSON text (codec.encode), or packed with raw bytes (codec.pack)
    output: str | None
    error: str | None
    created_ms: int
    updated_ms: int
    recovery_attempts: int
    parent_id: str | None
    queue: str | None
    lane: str | None
    deadline_ms: int | None
    not_before_ms: int | None = None  # a sleeping or delayed run resumes no earlier than this
    executor_id: str | None = None  # the executor that owns it, while PENDING (where read)
    app_version: str | None = None  # the app's version that started it (where read)
    trace_context: str | None = None  # its W3C traceparent, if its start was traced


@dataclass(frozen=True)
class StepRecord:
    """The outcome of step number `step` of a workflow: `output` or `error`, never both."""

    workflow_id: str
    step: int
    name: str
    kind: StepKind
    output: str | None
    error: str | None
    attempts: int
    started_ms: int
    ended_ms: int


@dataclass(frozen=True)
class KafkaKey:
    """The idempotency key of one Kafka message, and where it came from."""

    key: str
    group_id: str
    topic: str
    partition: int
    offset: int

    def log_fields(self) -> dict[str, object]:
        """Where the message came from, for a log call's `extra` (engine/logjson.py)."""
        return {"kafka_topic": self.topic, "kafka_partition": self.partition,
                "kafka_offset": self.offset, "kafka_group": self.group_id}


@dataclass(frozen=True)
class QuarantinedMessage:
    key: str
    group_id: str
    topic: str
    partition: int
    offset: int
    handler: str
    message_key: bytes | None
    value: bytes | None
    headers: str
    timestamp_ms: int | None
    error: str
    attempts: int
    quarantined_ms: int
    status: str  # QUARANTINED; RETRIED once a retry applied it; DROPPED by an operator
    # attempts == 0: the client could not decode it; it was never applied and cannot be, and
    # `raw` holds the record batch (Kafka's format) that holds it.
    raw: bytes | None = None


ALIVE, STOPPED, EXPIRED = "ALIVE", "STOPPED", "EXPIRED"  # an executor's status


@dataclass(frozen=True)
class ExecutorRecord:
    executor_id: str
    host: str
    pid: int
    started_ms: int
    heartbeat_ms: int
    lease_ms: int
    status: str  # ALIVE, STOPPED or EXPIRED (as recorded: an ALIVE one may be past its lease)
    runs: int  # PENDING runs it owns
    app_version: str | None = None

    def expired_at(self, now_ms: int) -> bool:
        return self.status == ALIVE and self.heartbeat_ms + self.lease_ms < now_ms


def executor_from_row(row: tuple[object, ...]) -> ExecutorRecord:
    e, host, pid, started, beat, lease, status, runs, version = row
    return ExecutorRecord(str(e), str(host), int(str(pid)), int(str(started)), int(str(beat)),
                          int(str(lease)), str(status), int(str(runs)),
                          None if version is None else str(version))
