"""Read models of a journal for people and scripts: what `eoflow status` and `eoflow workflows`
show. Plain dicts of JSON types; the keys are a stable, documented interface (README).

A view never raises on what it reads: a row written by a bug, a newer eoflow or a hand edit
is shown as far as it can be, and what cannot be read is marked (`<unreadable: ...>`, or the
tag `{"$eoflow": "unreadable", "v": the stored text}` where a stored value was expected)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import apsw

from eoflow.errors import UndecodableValueError
from eoflow.journal import codec
from eoflow.journal.reader import Reader
from eoflow.journal.records import ExecutorRecord, QuarantinedMessage, Status, StepKind

THROUGHPUT_WINDOW_S = 60
MAX_DEPTH = 100  # deeper stored values are marked: rendering them would exhaust the stack
_STATUSES = frozenset(status.value for status in Status)
_KINDS = frozenset(kind.value for kind in StepKind)
# The columns of the get_workflow and list_workflows queries, in their order (as in reader.py).
_WORKFLOW_COLUMNS = ("workflow_id", "name", "status", "inputs", "output", "error", "created_ms",
                     "updated_ms", "recovery_attempts", "parent_id", "queue", "lane",
                     "deadline_ms", "not_before_ms", "executor_id", "app_version",
                     "trace_context")


class _TooDeep(Exception):
    pass


def unreadable(value: Any) -> str:
    """How a view shows a stored cell it cannot read."""
    shown = repr(value)
    return f"<unreadable: {shown if len(shown) <= 120 else shown[:119] + '…'}>"


def iso(ms: Any) -> str | None:
    if ms is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat(
            timespec="milliseconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return unreadable(ms)


def _known(code: Any, known: frozenset[str], what: str) -> str:
    return code if code in known else f"<unknown {what}: {code!r}>"


def _loads(text: Any) -> Any:
    """Raises ValueError (or RecursionError, TypeError) on what is not JSON text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not isinstance(text, str):
        raise TypeError(type(text).__name__)
    return json.loads(text)


def _json(text: Any) -> Any:
    """A stored value as plain JSON (tags kept: nothing is rebuilt or imported), with bytes
    made readable beside their base64 (a Kafka message's value and key, say): `text` when
    they are UTF-8, `json` when that text parses. A malformed record is marked, not raised."""
    if text is None:
        return None
    try:
        return _readable(_loads(codec.as_text(text)), 0)
    except (ValueError, TypeError, RecursionError, _TooDeep, UndecodableValueError):
        stored = text if isinstance(text, str) else repr(text)
        return {codec.TAG: "unreadable", "v": stored[:200]}


def _readable(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, list):
        return [_readable(item, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get(codec.TAG) == "bytes" and isinstance(value.get("v"), str):
        shown = dict(value)
        try:
            decoded = base64.b64decode(value["v"], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return shown
        try:
            shown["json"] = _readable(json.loads(decoded), depth + 1)
        except (ValueError, RecursionError, _TooDeep):
            shown["text"] = decoded
        return shown
    return {key: _readable(item, depth + 1) for key, item in value.items()}


def _error(text: Any) -> dict[str, str] | None:
    """{type, message} of a stored error; a part that cannot be read is marked."""
    if text is None:
        return None
    try:
        data = _loads(text)
    except (ValueError, TypeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return {"type": "?", "message": f"<unreadable error record: {str(text)[:120]!r}>"}
    kind, message = data.get("type"), data.get("message", "")
    return {"type": kind.replace(":", ".") if isinstance(kind, str) else unreadable(kind),
            "message": message if isinstance(message, str) else unreadable(message)}


def _traceback(text: Any) -> str | None:
    try:
        data = _loads(text)
    except (ValueError, TypeError, RecursionError):
        return None  # the error line already says the record is unreadable
    recorded = data.get("traceback") if isinstance(data, dict) else None
    return None if recorded is None else recorded if isinstance(recorded, str) else unreadable(
        recorded)


def _bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _message_part(name: str, stored: Any) -> dict[str, Any]:
    """A Kafka message's value or key: as text (replacing what is not UTF-8), as JSON when it
    is JSON, and as base64, exactly."""
    raw = _bytes(stored)
    if raw is None:
        return {name: None, f"{name}_base64": None}
    part: dict[str, Any] = {name: raw.decode("utf-8", "replace"),
                            f"{name}_base64": base64.b64encode(raw).decode("ascii")}
    try:
        part[f"{name}_json"] = _readable(json.loads(raw), 0)
    except (ValueError, RecursionError, _TooDeep):
        pass
    return part


def status_report(reader: Reader, recent: int = 5) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    by_name = reader.count_by_name()  # one scan of the status index serves both tables
    counts: dict[str, int] = {}
    for statuses in by_name.values():
        for code, count in statuses.items():
            counts[code] = counts.get(code, 0) + count
    finished = reader.finished_since(now_ms - THROUGHPUT_WINDOW_S * 1000)
    workflows = {status.value: counts.get(status.value, 0) for status in Status}
    workflows.update({_known(code, _STATUSES, "status"): count for code, count in counts.items()
                      if code not in _STATUSES})
    return {
        "journal": reader.path,
        "generated_at": iso(now_ms),
        "workflows": workflows,
        "by_name": by_name,
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
        "executors": [executor_view(e, now_ms) for e in reader.list_executors(limit=recent * 4)],
        "versions": [{"version": version, "pending": pending, "enqueued": enqueued}
                     for version, pending, enqueued in reader.live_runs_by_version()],
        "throughput": {
            "window_seconds": THROUGHPUT_WINDOW_S,
            "succeeded": finished,
            "per_second": round(finished / THROUGHPUT_WINDOW_S, 2),
            "last_5s_per_second": round(reader.finished_since(now_ms - 5000) / 5, 2),
        },
    }


def lag_view(reader: Reader, offsets: Callable[[str, list[str]], dict[tuple[str, int],
                                                                    tuple[int, int | None]]]
             ) -> list[dict[str, Any]]:
    """Per group and partition of the topics this journal recorded: the journal's last
    offset, Kafka's end offset and the group's committed offset there, and the lag (messages
    past the committed offset; past the journal's last, with nothing committed).
    `offsets(group, topics)` asks the brokers (engine/kafka/source.py)."""
    recorded: dict[str, dict[tuple[str, int], int]] = {}
    for group, topic, partition, offset, _, _ in reader.kafka_offsets():
        recorded.setdefault(group, {})[(topic, partition)] = offset
    rows = []
    for group, seen in sorted(recorded.items()):
        for (topic, partition), (end, committed) in sorted(
                offsets(group, sorted({t for t, _ in seen})).items()):
            last = seen.get((topic, partition))
            start = committed if committed is not None else (last + 1 if last is not None
                                                               else 0)
            rows.append({"group": group, "topic": topic, "partition": partition,
                         "journal_offset": last, "committed": committed, "end": end,
                         "lag": max(end - start, 0)})
    return rows


def executor_view(e: ExecutorRecord, now_ms: int) -> dict[str, Any]:
    """An executor as status shows it: `state` is `alive`, `expired` (an ALIVE one past its
    lease: dead, its runs about to be taken over), `stopped` or `taken over`."""
    state = {"ALIVE": "expired" if e.expired_at(now_ms) else "alive", "STOPPED": "stopped",
             "EXPIRED": "taken over"}.get(e.status, e.status.lower())
    return {"executor_id": e.executor_id, "host": e.host, "pid": e.pid, "state": state,
            "runs_owned": e.runs, "lease_seconds": e.lease_ms / 1000, "version": e.app_version,
            "last_heartbeat_at": iso(e.heartbeat_ms), "started_at": iso(e.started_ms)}


def quarantined_view(q: QuarantinedMessage) -> dict[str, Any]:
    view = {
        "key": q.key, "group": q.group_id, "topic": q.topic, "partition": q.partition,
        "offset": q.offset, "handler": q.handler, "error": _error(q.error),
        "attempts": q.attempts, "status": q.status, "quarantined_at": iso(q.quarantined_ms),
    }
    raw = {"undecodable": q.attempts == 0,
           "raw_base64": None if q.raw is None else base64.b64encode(q.raw).decode("ascii")}
    return (view | _message_part("value", q.value) | _message_part("message_key", q.message_key)
            | raw)


def _workflow_fields(row: apsw.SQLiteValues) -> dict[str, apsw.SQLiteValue]:
    return dict(zip(_WORKFLOW_COLUMNS, row, strict=True))


def workflow_summary(fields: dict[str, Any]) -> dict[str, Any]:
    """One run as listed, from its stored fields (a row of list_workflows, by column name)."""
    return {
        "workflow_id": fields["workflow_id"], "name": fields["name"],
        "status": _known(fields["status"], _STATUSES, "status"),
        "created_at": iso(fields["created_ms"]), "updated_at": iso(fields["updated_ms"]),
        "error": _error(fields["error"]),
        # While PENDING, the executor that runs it (see `eoflow status`); None: no one yet.
        "executor": fields["executor_id"] if fields["status"] == "PENDING" else None,
        "version": fields["app_version"],  # of the app's code that started it (None: unknown)
    }


def list_workflows(reader: Reader, status: Status | None = None, name: str | None = None,
                   limit: int = 50, version: str | None = None) -> list[dict[str, Any]]:
    """Recent runs, newest first. Read as rows, not records: a record refuses a status it does
    not know, a view shows it."""
    rows = reader._all("list_workflows",
                       (status.value if status else None, name, limit, version))
    return [workflow_summary(_workflow_fields(row)) for row in rows]


def _int(cell: apsw.SQLiteValue) -> int:
    """int(cell), raising TypeError on NULL as int(None) does (ValueError on non-numeric text)."""
    if cell is None:
        raise TypeError("NULL is not a number")
    return int(cell)


def step_view(row: apsw.SQLiteValues) -> dict[str, Any]:
    """One step from its stored row (the steps_of query): its duration in whole milliseconds,
    as the journal keeps times (0: under a millisecond)."""
    _, number, name, kind, stored_output, error, attempts, started_ms, ended_ms = row
    output = _json(stored_output)
    if kind == StepKind.SLEEP.value and isinstance(output, int):
        output = {"until": iso(output)}  # a sleep's (or a wait's) recorded deadline
    try:
        duration: int | str = _int(ended_ms) - _int(started_ms)
    except (TypeError, ValueError):
        duration = unreadable((started_ms, ended_ms))
    return {
        "step": number, "name": name, "kind": _known(kind, _KINDS, "kind"),
        "attempts": attempts, "duration_ms": duration,
        "output": output, "error": _error(error),
    }


def workflow_detail(reader: Reader, workflow_id: str) -> dict[str, Any] | None:
    """One run with its steps, or None when the journal has no run with this id."""
    rows = reader._all("get_workflow", (workflow_id,))
    if not rows:
        return None
    fields = _workflow_fields(rows[0])
    detail = workflow_summary(fields)
    detail.update(
        inputs=_json(fields["inputs"]), output=_json(fields["output"]),
        recovery_attempts=fields["recovery_attempts"], parent_id=fields["parent_id"],
        queue=fields["queue"], deadline_at=iso(fields["deadline_ms"]),
        trace_context=fields["trace_context"],
        steps=[step_view(row) for row in reader._all("steps_of", (workflow_id,))],
    )
    if fields["error"] is not None:
        detail["traceback"] = _traceback(fields["error"])
    return detail


def status_line(report: dict[str, Any], as_json: bool) -> str:
    """One line of a status report, for `status --watch` outside a terminal."""
    if as_json:
        return json.dumps(report, separators=(",", ":"))
    counts = " ".join(f"{status}={count}" for status, count in report["workflows"].items())
    rate = report["throughput"]
    return (f"{report['generated_at']} {counts} quarantined={len(report['quarantined'])} "
            f"succeeded_per_s={rate['per_second']} last_5s_per_s={rate['last_5s_per_second']}")
