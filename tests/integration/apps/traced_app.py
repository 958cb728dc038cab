"""An app that configures the OpenTelemetry SDK (as a user's would) and writes every span it
ends to SPANS (one JSON object per line, written at once), for the trace tests.

    python traced_app.py JOURNAL start   # start a traced run; its third step waits for GO
    python traced_app.py JOURNAL finish  # open the engine (recovery resumes it) and wait
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import eoflow
from eoflow import Engine, step, transaction, workflow

GO = os.environ.get("GO", "")


class FileExporter(SpanExporter):
    """Each span as one line, appended and flushed as it ends (a kill loses no ended span)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps({
            "name": s.name, "trace": f"{s.context.trace_id:032x}",
            "span": f"{s.context.span_id:016x}",
            "parent": f"{s.parent.span_id:016x}" if s.parent else None,
            "attributes": dict(s.attributes or {}),
            "events": [e.name for e in s.events], "pid": os.getpid()}) + "\n" for s in spans)
        fd = os.open(os.environ["SPANS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)
failures = {"left": 1}


@step(max_attempts=3, retry_interval=0.01)
def tr_parse(text: str) -> int:
    if failures["left"]:
        failures["left"] -= 1
        raise ValueError("flaky")
    return len(text)


@step()
def tr_wait() -> str:
    with trace.get_tracer("app").start_as_current_span("app work"):
        pass  # a span of the app's own code: it nests under the step's
    while GO and not os.path.exists(GO):
        time.sleep(0.02)
    return "went"


@transaction()
def tr_save(n: int) -> int:
    eoflow.db().execute("CREATE TABLE IF NOT EXISTS tr_saved (n INTEGER)")
    eoflow.db().execute("INSERT INTO tr_saved VALUES (?)", (n,))
    return n


@workflow()
def tr_child(n: int) -> int:
    return tr_save(n * 2)


@workflow()
def tr_order(text: str) -> str:
    n = tr_parse(text)
    went = tr_wait()
    return f"{went}:{tr_child(n)}"


if __name__ == "__main__":
    journal, mode = sys.argv[1], sys.argv[2]
    with Engine(journal) as engine:
        if mode == "start":
            with trace.get_tracer("app").start_as_current_span("request"):
                engine.start(tr_order, "hello", workflow_id="order-1")
                engine.start(tr_order, "hello", workflow_id="order-1")  # finds it: no span
            time.sleep(600)  # the test kills this process while tr_wait waits
        else:
            print(engine.retrieve("order-1").result(timeout=30), flush=True)
