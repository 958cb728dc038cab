"""A run's trace, rebuilt from the journal alone (`eoflow journal trace ID`).

Tracing for runs that happened before tracing was switched on, or whose exporter was away:
every run is a span from its creation to its outcome, every recorded step a span inside it
(a child workflow's run under the step that started it). A run that journaled its trace
context keeps that trace, under the span that started it; any other gets a trace id derived
from its id. Span ids are derived from the workflow id and step number, so rebuilding twice
gives the same spans (an OTLP backend keeps one copy). Times are the journal's milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from eoflow.journal import codec
from eoflow.journal.kafka_keys import parse_message_key
from eoflow.journal.reader import Reader
from eoflow.journal.records import StepKind, StepRecord, WorkflowRecord

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", re.I)
MAX_RUNS = 1000  # runs (a parent and its descendants) in one rebuilt trace, at most


@dataclass
class SpanView:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None
    name: str
    start_ms: int
    end_ms: int | None  # None: still running
    depth: int
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _id(*parts: object, size: int = 16) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:size]


def split_traceparent(value: str | bytes | None) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a W3C traceparent, or None if it is not a valid one. The
    one reading of a traceparent, for the journal's traces and the live ones (engine/otel.py).
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _TRACEPARENT.fullmatch(value.strip()) if value else None
    if match is None or match.group(1).lower() == "ff":
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    return (trace_id, span_id, int(match.group(4), 16)) if trace_id and span_id else None


def origin_attributes(workflow_id: str, name: str) -> dict[str, Any]:
    """A run's attributes: its id and name, and the Kafka message its id names, if any
    (journal/kafka_keys.py), with OpenTelemetry's messaging names."""
    attributes: dict[str, Any] = {"eoflow.workflow.id": workflow_id,
                                  "eoflow.workflow.name": name}
    origin = parse_message_key(workflow_id)
    if origin is not None:
        attributes.update({
            "messaging.system": "kafka", "messaging.destination.name": origin.topic,
            "messaging.destination.partition.id": str(origin.partition),
            "messaging.kafka.offset": origin.offset,
            "messaging.consumer.group.name": origin.group_id})
    return attributes


def _context(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, span id), in hex, of a journaled traceparent, if it is one."""
    parsed = split_traceparent(traceparent)
    return None if parsed is None else (f"{parsed[0]:032x}", f"{parsed[1]:016x}")


def _run_attributes(run: WorkflowRecord) -> dict[str, Any]:
    attributes = origin_attributes(run.workflow_id, run.name)
    attributes.update({"eoflow.outcome": run.status.value,
                       "eoflow.recovery_attempts": run.recovery_attempts})
    if run.app_version:
        attributes["eoflow.app_version"] = run.app_version
    return attributes


def _error_text(stored: str | None) -> str | None:
    if stored is None:
        return None
    try:
        return codec.describe(codec.decode_error(stored))
    except Exception:  # written by another version, or damaged: show it as stored
        return stored[:200]


def _step_end(step: StepRecord) -> int:
    """A sleep lasts to its wake-up time (its output); any other step to its record."""
    if step.kind is StepKind.SLEEP and step.output is not None:
        try:
            wake = codec.decode(step.output)
        except Exception:
            return step.ended_ms
        if isinstance(wake, int) and wake > step.ended_ms:
            return wake
    return step.ended_ms


def rebuild(reader: Reader, workflow_id: str) -> list[SpanView] | None:
    """The spans of run `workflow_id` and its descendants, parents first; None if no run."""
    root = reader.get_workflow(workflow_id)
    if root is None:
        return None
    context = _context(root.trace_context)
    trace_id = context[0] if context else _id(workflow_id, size=32)
    spans: list[SpanView] = []
    todo: list[tuple[WorkflowRecord, str | None, int]] = [
        (root, context[1] if context else None, 0)]
    seen = {workflow_id}
    while todo:
        run, parent, depth = todo.pop()
        run_span = SpanView(trace_id, _id(run.workflow_id, "run"), parent, f"workflow {run.name}",
                            run.created_ms, run.updated_ms if run.status.terminal else None,
                            depth, _run_attributes(run), _error_text(run.error))
        spans.append(run_span)
        for step in reader.steps_of(run.workflow_id):
            span = SpanView(trace_id, _id(run.workflow_id, step.step), run_span.span_id,
                            f"{step.kind.value} {step.name}", step.started_ms, _step_end(step),
                            depth + 1, {"eoflow.step.number": step.step,
                                        "eoflow.step.name": step.name,
                                        "eoflow.step.kind": step.kind.value,
                                        "eoflow.step.attempts": step.attempts,
                                        "eoflow.outcome": "ERROR" if step.error else "SUCCESS"},
                            _error_text(step.error))
            spans.append(span)
            if step.kind is StepKind.CHILD and step.output is not None:
                try:
                    child_id = codec.decode(step.output)
                except Exception:  # damaged or foreign: the step stays, without its child
                    continue
                if not isinstance(child_id, str) or child_id in seen:
                    continue
                if len(seen) >= MAX_RUNS:  # said on the root span, not cut in silence
                    spans[0].attributes["eoflow.truncated_at_runs"] = MAX_RUNS
                    continue
                child = reader.get_workflow(child_id)
                if child is not None:
                    seen.add(child_id)
                    todo.append((child, span.span_id, depth + 2))
    return _in_order(spans)


def _in_order(spans: list[SpanView]) -> list[SpanView]:
    """Each span followed by its children, by start time (the timeline's order)."""
    children: dict[str | None, list[SpanView]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)
    ordered: list[SpanView] = []
    stack = _latest_first(children.get(None, []))
    while stack:
        span = stack.pop()
        ordered.append(span)
        stack.extend(_latest_first(children.get(span.span_id, [])))
    return ordered


def _latest_first(spans: list[SpanView]) -> list[SpanView]:
    """By start time, the latest first (popped last); ties keep their step order."""
    return list(reversed(sorted(spans, key=lambda s: s.start_ms)))


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}  # OTLP/JSON carries 64-bit integers as strings
    return {"stringValue": str(value)}


def otlp(spans: list[SpanView], service: str = "eoflow") -> dict[str, Any]:
    """The spans as an OTLP/JSON trace export request (POST it to a collector's /v1/traces).
    A span still running ends at the trace's last record."""
    last = max((s.end_ms or s.start_ms for s in spans), default=0)

    def one(span: SpanView) -> dict[str, Any]:
        out: dict[str, Any] = {
            "traceId": span.trace_id, "spanId": span.span_id, "name": span.name,
            "kind": 1,  # SPAN_KIND_INTERNAL
            "startTimeUnixNano": str(span.start_ms * 1_000_000),
            "endTimeUnixNano": str((span.end_ms or max(last, span.start_ms)) * 1_000_000),
            "attributes": [{"key": k, "value": _otlp_value(v)}
                           for k, v in span.attributes.items()],
            "status": {"code": 2, "message": span.error} if span.error else {"code": 1}}
        if span.parent_id:
            out["parentSpanId"] = span.parent_id
        return out

    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "eoflow.journal"},
                        "spans": [one(span) for span in spans]}]}]}


def as_dicts(spans: list[SpanView]) -> list[dict[str, Any]]:
    return [dict(span.__dict__) for span in spans]
