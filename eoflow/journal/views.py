"""Read models of a journal for people and scripts: what `eoflow status` and `eoflow workflows`
show. Plain dicts of JSON types; the keys are a stable, documented interface (README)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

from eoflow.journal import codec
from eoflow.journal.reader import SQLiteReader
from eoflow.journal.records import (
    QuarantinedMessage,
    Status,
    StepKind,
    StepRecord,
    WorkflowRecord,
)

THROUGHPUT_WINDOW_S = 60


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat(
        timespec="milliseconds")


def _json(text: str | None) -> Any:
    """A stored value as plain JSON (tags kept: nothing is rebuilt or imported), with bytes
    made readable beside their base64 (a Kafka message's value and key, say): `text` when
    they are UTF-8, `json` when that text parses. A malformed record is marked, not raised."""
    if text is None:
        return None
    try:
        return _readable(json.loads(text))
    except (ValueError, RecursionError):
        return {"unreadable": text[:200]}


def _readable(value: Any) -> Any:
    if isinstance(value, list):
        return [_readable(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get(codec.TAG) == "bytes" and isinstance(value.get("v"), str):
        shown = dict(value)
        try:
            decoded = base64.b64decode(value["v"], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return shown
        try:
            shown["json"] = json.loads(decoded)
        except ValueError:
            shown["text"] = decoded
        return shown
    return {key: _readable(item) for key, item in value.items()}


def _error(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    try:
        kind, message = codec.error_summary(text)
        return {"type": str(kind), "message": str(message)}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {"type": "?", "message": f"<unreadable error record: {text[:120]!r}>"}


def status_report(reader: SQLiteReader, recent: int = 5) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    counts = reader.count_by_status()
    finished = reader.finished_since(now_ms - THROUGHPUT_WINDOW_S * 1000)
    return {
        "journal": reader.path,
        "generated_at": iso(now_ms),
        "workflows": {status.value: counts.get(status.value, 0) for status in Status},
        "by_name": reader.count_by_name(),
        "recent_failures": [
            {"workflow_id": wid, "name": name, "status": status, "error": _error(error),
             "updated_at": iso(updated)}
            for wid, name, status, error, updated in reader.recent_failures(recent)
        ],
        "quarantined": [quarantined_view(q) for q in reader.quarantined(limit=recent * 4)],
        "kafka": [
            {"group": group, "topic": topic, "partition": partition, "last_offset": offset,
             "messages": messages, "updated_at": iso(updated)}
            for group, topic, partition, offset, messages, updated in reader.kafka_offsets()
        ],
        "throughput": {
            "window_seconds": THROUGHPUT_WINDOW_S,
            "succeeded": finished,
            "per_second": round(finished / THROUGHPUT_WINDOW_S, 2),
            "last_5s_per_second": round(reader.finished_since(now_ms - 5000) / 5, 2),
        },
    }


def quarantined_view(q: QuarantinedMessage) -> dict[str, Any]:
    return {
        "key": q.key, "group": q.group_id, "topic": q.topic, "partition": q.partition,
        "offset": q.offset, "handler": q.handler, "error": _error(q.error),
        "attempts": q.attempts, "status": q.status, "quarantined_at": iso(q.quarantined_ms),
        "value": q.value.decode("utf-8", "replace") if q.value is not None else None,
    }


def workflow_summary(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "workflow_id": record.workflow_id, "name": record.name, "status": record.status.value,
        "created_at": iso(record.created_ms), "updated_at": iso(record.updated_ms),
        "error": _error(record.error),
    }


def step_view(step: StepRecord) -> dict[str, Any]:
    output = _json(step.output)
    if step.kind is StepKind.SLEEP and isinstance(output, int):
        output = {"until": iso(output)}  # a sleep's (or a wait's) recorded deadline
    return {
        "step": step.step, "name": step.name, "kind": step.kind.value,
        "attempts": step.attempts, "duration_ms": step.ended_ms - step.started_ms,
        "output": output, "error": _error(step.error),
    }


def workflow_detail(reader: SQLiteReader, record: WorkflowRecord) -> dict[str, Any]:
    detail = workflow_summary(record)
    detail.update(
        inputs=_json(record.inputs), output=_json(record.output),
        recovery_attempts=record.recovery_attempts, parent_id=record.parent_id,
        queue=record.queue, deadline_at=iso(record.deadline_ms),
        steps=[step_view(s) for s in reader.steps_of(record.workflow_id)],
    )
    if record.error is not None:
        detail["traceback"] = codec.error_traceback(record.error)
    return detail


def status_line(report: dict[str, Any], as_json: bool) -> str:
    """One line of a status report, for `status --watch` outside a terminal."""
    if as_json:
        return json.dumps(report, separators=(",", ":"))
    counts = " ".join(f"{status}={count}" for status, count in report["workflows"].items())
    rate = report["throughput"]
    return (f"{report['generated_at']} {counts} quarantined={len(report['quarantined'])} "
            f"succeeded_per_s={rate['per_second']}")
