"""`eoflow run --log-format json`: one JSON object per log line, for log pipelines.

Fields: `time` (ISO 8601, UTC), `level`, `logger`, `message`; inside a workflow run also
`workflow_id`, `workflow` and `step` (the step number reached), the names its spans would
carry; `kafka_topic`, `kafka_partition`, `kafka_offset` and `kafka_group` where a log call
passes them (`extra=`); `trace_id` and `span_id` where an OpenTelemetry span is current (a
run's, a step's: engine/otel.py), to join a line to its trace; `exception` with the
traceback, if any."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from eoflow.engine.context import current_run
from eoflow.engine.telemetry import load as load_telemetry

PASSED = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_group")


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._telemetry = load_telemetry()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        run = current_run.get()
        if run is not None:
            line.update(workflow_id=run.workflow_id, workflow=run.definition.name,
                        step=run.step)
        if self._telemetry is not None:
            ids = self._telemetry.current_ids()
            if ids is not None:
                line["trace_id"], line["span_id"] = ids
        for key in PASSED:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
