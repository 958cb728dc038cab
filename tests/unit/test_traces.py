"""Traces rebuilt from the journal alone (journal/traces.py), for a run that was not traced
(no SDK configured in this process): a trace id derived from the run's id, the same spans
each time, a failed step marked, a sleep lasting to its wake-up, OTLP/JSON well formed."""

from __future__ import annotations

from pathlib import Path

import pytest

import eoflow
from eoflow import Engine, step, workflow
from eoflow.cli.trace_cmd import timeline
from eoflow.journal import traces
from eoflow.journal.opening import open_reader


@step()
def tu_fail() -> None:
    raise ValueError("no stock")


@workflow()
def tu_flow() -> str:
    eoflow.sleep(0.05)
    try:
        tu_fail()
    except ValueError:
        pass
    return "ok"


def test_an_untraced_run_is_rebuilt_the_same_each_time(tmp_path: Path) -> None:
    journal = str(tmp_path / "j.db")
    with Engine(journal) as engine:
        assert engine.start(tu_flow, workflow_id="tu-1").result(timeout=10) == "ok"
        assert engine.retrieve("tu-1").status().value == "SUCCESS"
    reader = open_reader(journal)
    try:
        assert reader.get_workflow("tu-1").trace_context is None  # type: ignore[union-attr]
        spans = traces.rebuild(reader, "tu-1")
        again = traces.rebuild(reader, "tu-1")
        assert traces.rebuild(reader, "nope") is None
    finally:
        reader.close()
    assert spans is not None and again is not None
    assert traces.as_dicts(spans) == traces.as_dicts(again)
    run, sleep, fail = spans
    assert run.parent_id is None and len(run.trace_id) == 32
    assert {s.trace_id for s in spans} == {run.trace_id}
    assert sleep.name == "sleep eoflow.sleep" and sleep.end_ms - sleep.start_ms >= 50
    assert fail.error is not None and "no stock" in fail.error
    assert fail.attributes["eoflow.outcome"] == "ERROR"
    request = traces.otlp(spans)
    exported = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["status"]["code"] for s in exported] == [1, 1, 2]
    assert all(int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) for s in exported)
    drawn = timeline(spans).splitlines()
    assert len(drawn) == 4 and "no stock" in drawn[3]


@pytest.mark.parametrize("value", ["", "00-zz-11-01", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"])
def test_a_bad_traceparent_parents_nothing(value: str) -> None:
    from eoflow.engine.otel import parse_traceparent

    assert parse_traceparent(value) is None


def test_a_client_start_keeps_the_callers_trace(tmp_path: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from eoflow import Client

    journal = str(tmp_path / "j.db")
    Engine(journal, recover=False).close()  # the journal exists; nothing runs the run
    caller = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7,
                         is_remote=False, trace_flags=TraceFlags(1))
    with Client(journal) as client, trace.use_span(NonRecordingSpan(caller)):
        client.start("tu_flow", workflow_id="from-client")
    reader = open_reader(journal)
    try:
        record = reader.get_workflow("from-client")
    finally:
        reader.close()
    assert record is not None
    assert record.trace_context == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
