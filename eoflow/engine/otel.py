"""OpenTelemetry: a span per run execution and per step, and the engine's metrics.

The only module that imports opentelemetry, imported only when its API is installed (the
`eoflow[otel]` extra) and EOFLOW_OTEL is not "off" (see engine/telemetry.py); otherwise
every caller skips its calls: nothing imported, nothing slower.
eoflow uses the API alone. The app configures an SDK and its exporters; until it does, the
API's calls are no-ops. `serve_prometheus` (eoflow run --metrics-port) is the one place that
configures anything, and only a metrics reader.

Traces. A run's start (a start, a Kafka record, a child, an enqueue) is a short span
`eoflow.start NAME`, the child of the caller's span, or of the W3C `traceparent` header of the
Kafka message that started it. Its context is journaled with the run (trace_context). Each
execution of the run (the first, and each after a crash, a long sleep or a resume) is a span
`workflow NAME` under it, so a run keeps one trace across processes and restarts. A step is
a span under the execution that ran it; a replayed step does not run again, and has no span
again. The execution span is current while the workflow runs, and a step's while it runs, so
spans the app's own code makes nest under them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from eoflow.journal.kafka_keys import parse_message_key

log = logging.getLogger("eoflow.engine")
TRACEPARENT = "traceparent"  # the W3C header (a Kafka message's) that parents a run's start
Attributes = dict[str, Any]
Handle = tuple[Span, object]  # a span and the context token that made it current
SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0, 300.0]  # buckets: the SDK's default ones are for milliseconds
WRITES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def traceparent(span: Span) -> str | None:
    """The W3C traceparent of `span`, or None if it has no valid context (no SDK)."""
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def parse_traceparent(value: str | bytes | None) -> Any:
    """The OpenTelemetry context a W3C traceparent names, or None if it is not one."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    parts = value.strip().split("-") if value else []
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[0] == "ff":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))
    return set_span_in_context(NonRecordingSpan(parent))


def run_attributes(workflow_id: str, name: str) -> Attributes:
    """A run's attributes; a Kafka run's id names its message (journal/kafka_keys.py)."""
    attributes: Attributes = {"eoflow.workflow.id": workflow_id, "eoflow.workflow.name": name}
    origin = parse_message_key(workflow_id)
    if origin is not None:
        attributes.update({
            "messaging.system": "kafka", "messaging.destination.name": origin.topic,
            "messaging.destination.partition.id": str(origin.partition),
            "messaging.kafka.offset": origin.offset,
            "messaging.consumer.group.name": origin.group_id})
    return attributes


class Telemetry:
    """The tracer and the instruments of this process (one for every engine in it)."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer("eoflow")
        meter = metrics.get_meter("eoflow")
        self.runs_started = meter.create_counter(
            "eoflow.runs.started", "{run}", "Runs recorded, by workflow name")
        self.runs_finished = meter.create_counter(
            "eoflow.runs.finished", "{run}", "Runs that reached an outcome, by name and status")
        self.step_duration = meter.create_histogram(
            "eoflow.step.duration", "s", "Time a step or transaction took, retries included",
            explicit_bucket_boundaries_advisory=SECONDS)
        self.step_retries = meter.create_counter(
            "eoflow.step.retries", "{attempt}", "Step attempts that failed and were retried")
        self.commit_duration = meter.create_histogram(
            "eoflow.journal.commit.duration", "s", "Time the journal's commit (fsync) took",
            explicit_bucket_boundaries_advisory=SECONDS)
        self.batch_size = meter.create_histogram(
            "eoflow.journal.batch.size", "{write}", "Writes that shared one journal commit",
            explicit_bucket_boundaries_advisory=WRITES)
        self.kafka_recorded = meter.create_counter(
            "eoflow.kafka.messages.recorded", "{message}", "Kafka messages recorded")
        self.kafka_quarantined = meter.create_counter(
            "eoflow.kafka.messages.quarantined", "{message}", "Kafka messages quarantined")
        self.queue_wait = meter.create_histogram(
            "eoflow.queue.wait", "s", "Time an enqueued run waited for its queue",
            explicit_bucket_boundaries_advisory=SECONDS)
        self._lock = threading.Lock()
        self._lags: list[Callable[[], Iterable[tuple[Attributes, int]]]] = []
        self._depths: list[Callable[[], dict[str, int]]] = []
        meter.create_observable_gauge("eoflow.kafka.consumer.lag", [self._observe_lag],
                                      "{message}", "Messages past a partition's position")
        meter.create_observable_gauge("eoflow.queue.depth", [self._observe_depth],
                                      "{run}", "Runs waiting in a queue (ENQUEUED)")

    # -- traces -----------------------------------------------------------------------------

    @staticmethod
    def recording() -> bool:
        """Whether an SDK is configured: without one, eoflow makes no span at all (the API's
        no-op spans cost a tenth of a short run), and only passes trace contexts on."""
        return not isinstance(trace.get_tracer_provider(),
                              (trace.ProxyTracerProvider, trace.NoOpTracerProvider))

    def start_context(self, workflow_id: str, name: str,
                      parent: str | bytes | None = None) -> str | None:
        """Trace a run's start (under `parent`, a traceparent, else the current span); the
        traceparent to journal with the run, None when there is no trace to continue."""
        context = parse_traceparent(parent) if parent else None
        if not self.recording():  # pass the parent on: the caller's trace, if any
            current = trace.get_current_span(context)
            return traceparent(current)
        span = self.tracer.start_span(f"eoflow.start {name}", context, SpanKind.PRODUCER,
                                      run_attributes(workflow_id, name))
        span.end()
        return traceparent(span)

    def begin_run(self, workflow_id: str, name: str, trace_context: str | None,
                  replaying: int) -> Handle | None:
        """An execution of a run, current until `end`; under its journaled start, if any."""
        if not self.recording():
            return None
        context = parse_traceparent(trace_context) if trace_context else None
        attributes = run_attributes(workflow_id, name)
        attributes["eoflow.replayed_steps"] = replaying
        span = self.tracer.start_span(f"workflow {name}", context, SpanKind.CONSUMER,
                                      attributes)
        return span, otel_context.attach(set_span_in_context(span))

    def begin_step(self, name: str, kind: str, number: int) -> Handle | None:
        if not self.recording():
            return None
        span = self.tracer.start_span(f"{kind} {name}", attributes={
            "eoflow.step.number": number, "eoflow.step.name": name, "eoflow.step.kind": kind})
        return span, otel_context.attach(set_span_in_context(span))

    def end(self, handle: Handle, outcome: str, error: BaseException | None = None,
            attempts: int | None = None) -> None:
        """End a run's or a step's span with its outcome (and its attempts, for a step)."""
        span, token = handle
        otel_context.detach(token)  # type: ignore[arg-type]
        span.set_attribute("eoflow.outcome", outcome)
        if attempts is not None:
            span.set_attribute("eoflow.step.attempts", attempts)
        if error is not None:
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
        span.end()

    @staticmethod
    def current_ids() -> tuple[str, str] | None:
        """(trace id, span id) of the current span, in hex, if there is one (for log lines)."""
        sc = trace.get_current_span().get_span_context()
        return (f"{sc.trace_id:032x}", f"{sc.span_id:016x}") if sc.is_valid else None

    @staticmethod
    def retried(handle: Handle, attempt: int, error: BaseException) -> None:
        handle[0].add_event("eoflow.retry", {
            "eoflow.step.attempt": attempt, "exception.type": type(error).__name__,
            "exception.message": str(error)})

    # -- metrics ----------------------------------------------------------------------------

    def step_done(self, name: str, kind: str, seconds: float, attempts: int) -> None:
        attributes = {"workflow_step": name, "kind": kind}
        self.step_duration.record(seconds, attributes)
        if attempts > 1:
            self.step_retries.add(attempts - 1, attributes)

    def commit_observer(self, writes: int, seconds: float) -> None:
        self.commit_duration.record(seconds)
        self.batch_size.record(writes)

    def watch(self, lag: Callable[[], Iterable[tuple[Attributes, int]]] | None = None,
              depth: Callable[[], dict[str, int]] | None = None) -> Callable[[], None]:
        """Observe a consumer's lag or a journal's queue depths; returns how to stop."""
        with self._lock:
            if lag is not None:
                self._lags.append(lag)
            if depth is not None:
                self._depths.append(depth)

        def unwatch() -> None:
            with self._lock:
                if lag is not None and lag in self._lags:
                    self._lags.remove(lag)
                if depth is not None and depth in self._depths:
                    self._depths.remove(depth)
        return unwatch

    def _observe_lag(self, _options: Any) -> Iterable[metrics.Observation]:
        with self._lock:
            sources = list(self._lags)
        for source in sources:
            for attributes, lag in source():
                yield metrics.Observation(lag, attributes)

    def _observe_depth(self, _options: Any) -> Iterable[metrics.Observation]:
        with self._lock:
            sources = list(self._depths)
        for source in sources:
            try:
                depths = source()
            except Exception as error:  # the journal is away: no figure this time
                log.debug("queue depth not observed: %s", error)
                continue
            for queue, depth in depths.items():
                yield metrics.Observation(depth, {"queue": queue})


_telemetry: Telemetry | None = None
_loaded = threading.Lock()


def telemetry() -> Telemetry:
    """The process's Telemetry (engine/telemetry.py decides whether to use it)."""
    global _telemetry
    with _loaded:
        if _telemetry is None:
            _telemetry = Telemetry()
        return _telemetry


def serve_prometheus(port: int, host: str = "0.0.0.0") -> str:
    """Serve the metrics in Prometheus' text format on `port` (eoflow run --metrics-port):
    an SDK meter provider with the Prometheus reader, set as the process's provider."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    return f"http://{host}:{port}/metrics"
