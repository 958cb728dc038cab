"""`eoflow run --log-format json` (engine/logjson.py): every line one JSON object, with the
run's workflow id, name and step inside a workflow, and a Kafka message's origin."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from eoflow.engine.logjson import JsonFormatter
from eoflow.journal.records import KafkaKey

APP = textwrap.dedent('''
    import eoflow

    @eoflow.step()
    def reserve(order: str) -> str:
        return order

    @eoflow.workflow()
    def checkout(order: str) -> str:
        reserve(order)
        eoflow.logger.info("charging %s", order)
        return order

    @eoflow.on_start
    def begin() -> None:
        checkout("o-1", )
    ''')


def test_eoflow_run_writes_one_json_object_per_line(tmp_path: Path) -> None:
    app = tmp_path / "shop.py"
    app.write_text(APP)
    process = subprocess.Popen(
        [sys.executable, "-m", "eoflow.cli.main", "run", str(app), "--journal",
         str(tmp_path / "j.db")], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EOFLOW_LOG_FORMAT": "json"})
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 30
        for line in process.stderr:
            lines.append(line)
            if "running:" in line or time.monotonic() > deadline:
                break
    finally:
        process.terminate()
        process.communicate(timeout=30)
    objects = [json.loads(line) for line in lines]  # each line is one object
    assert all({"time", "level", "logger", "message"} <= set(o) for o in objects)
    charging = next(o for o in objects if o["message"] == "charging o-1")
    assert charging["workflow"] == "checkout" and charging["step"] == 1
    assert charging["workflow_id"] and charging["logger"] == "eoflow.app"
    assert not any("workflow_id" in o for o in objects if "running:" in o["message"])


def test_a_kafka_message_s_origin_goes_with_its_log_line() -> None:
    key = KafkaKey("kafka:orders:3:42:shop", "shop", "orders", 3, 42)
    record = logging.LogRecord("eoflow.engine.kafka", logging.ERROR, __file__, 1,
                               "quarantined %s", ("x",), None)
    record.__dict__.update(key.log_fields())
    line = json.loads(JsonFormatter().format(record))
    assert (line["kafka_topic"], line["kafka_partition"], line["kafka_offset"],
            line["kafka_group"]) == ("orders", 3, 42, "shop")
    assert line["message"] == "quarantined x" and line["level"] == "ERROR"
    assert "trace_id" not in line  # no span is current


def test_a_line_logged_under_a_span_names_its_trace() -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    current = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7,
                          is_remote=False, trace_flags=TraceFlags(1))
    record = logging.LogRecord("eoflow.app", logging.INFO, __file__, 1, "hello", (), None)
    with trace.use_span(NonRecordingSpan(current)):
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["span_id"] == "00f067aa0ba902b7"
