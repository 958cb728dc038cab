"""Traces rebuilt from the journal alone (journal/traces.py), for a run that was not traced
(no SDK configured in this process): a trace id derived from the run's id, the same spans
each time, a failed step marked, a sleep lasting to its wake-up, OTLP/JSON well formed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import eoflow
import eoflow.errors
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


GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("value", [
    "", "00-zz-11-01", "00-" + "0" * 32 + "-" + "1" * 16 + "-01",  # a zero trace id
    GOOD.replace("4bf9", "4bg9"), GOOD.replace("00-4bf9", "ff-4bf9"),  # not hex; version ff
    GOOD[:-2] + "1", "0x" + GOOD[2:], GOOD.replace("-00f0", "-+0f0"), GOOD + "-00"])
def test_a_bad_traceparent_parents_nothing(value: str) -> None:
    from eoflow.engine.otel import parse_traceparent

    assert parse_traceparent(value) is None
    assert traces.split_traceparent(value) is None
    assert parse_traceparent(GOOD) is not None


def local_telemetry() -> tuple[Any, Any]:
    """The process's Telemetry with a tracer of its own SDK provider (the global one is left
    alone), recording into an in-memory exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from eoflow.engine.otel import Telemetry, telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tel = object.__new__(Telemetry)
    tel.__dict__.update(telemetry().__dict__, tracer=provider.get_tracer("test"),
                        _starting={})
    tel.recording = lambda: True  # type: ignore[method-assign]
    return tel, exporter


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_telemetry_never_raises_into_the_engine() -> None:
    tel, exporter = local_telemetry()
    handle = tel.begin_step("s", "step", 1)
    tel.retried(handle, 1, Unprintable())
    tel.end(handle, "ERROR", Unprintable(), 2)
    tel.close(None, "SUCCESS")  # even a bad call returns quietly
    (span,) = exporter.get_finished_spans()
    assert span.attributes["eoflow.step.attempts"] == 2
    assert span.status.status_code.name == "ERROR"


def test_a_start_that_created_nothing_sends_no_span() -> None:
    tel, exporter = local_telemetry()
    first = tel.start_context("w-1", "flow")
    again = tel.start_context("w-1", "flow")
    assert first and again and first != again
    tel.settle([first, again], [True])  # the second found the run there
    assert [s.name for s in exporter.get_finished_spans()] == ["eoflow.start flow"]
    assert tel._starting == {}


def test_a_client_start_keeps_the_callers_trace(tmp_path: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from eoflow import Client
    from eoflow.engine.otel import Telemetry

    assert not Telemetry.recording()  # no SDK here: the caller's context is passed on as is
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


GATE = threading.Event()
IN_STEP = threading.Event()


@step()
def tu_wait() -> str:
    IN_STEP.set()
    GATE.wait(10)
    return "done"


@workflow()
def tu_cancelled() -> str:
    return tu_wait()  # cancelled while it runs: the body ends, its outcome is refused


def test_a_run_span_ends_with_the_outcome_recorded(tmp_path: Path) -> None:
    tel, exporter = local_telemetry()
    with Engine(str(tmp_path / "j.db")) as engine:
        engine.runtime.telemetry = tel
        handle = engine.start(tu_cancelled, workflow_id="tu-c")
        assert IN_STEP.wait(10)
        engine.cancel("tu-c")
        GATE.set()
        with pytest.raises(eoflow.errors.WorkflowCancelledError):
            handle.result(timeout=10)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["step tu_wait"].attributes["eoflow.outcome"] == "SUCCESS"
    assert spans["workflow tu_cancelled"].attributes["eoflow.outcome"] == "CANCELLED"
