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

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

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

from eoflow.journal import codec
from eoflow.journal.traces import origin_attributes, split_traceparent

log = logging.getLogger("eoflow.engine")
TRACEPARENT = "traceparent"  # the W3C header (a Kafka message's) that parents a run's start
Attributes = dict[str, Any]
R = TypeVar("R")
Handle = tuple[Span, object]  # a span and the context token that made it current
SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0, 300.0]  # buckets: the SDK's default ones are for milliseconds
_UNKNOWN = object()  # the API has no global provider variable (see Telemetry.recording)
WRITES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def traceparent(span: Span) -> str | None:
    """The W3C traceparent of `span`, or None if it has no valid context (no SDK)."""
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def parse_traceparent(value: str | bytes | None) -> Any:
    """The OpenTelemetry context a W3C traceparent names, or None if it is not one."""
    parsed = split_traceparent(value)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))
    return set_span_in_context(NonRecordingSpan(parent))


def _quiet(method: Callable[..., R]) -> Callable[..., R | None]:
    """Telemetry never changes what the engine does: a failure in it (an app's exception
    whose __str__ raises, an SDK's bug) is logged at debug level and the call returns None."""
    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> R | None:
        try:
            return method(*args, **kwargs)
        except Exception as failure:
            log.debug("telemetry: %s failed: %s", method.__name__, codec.describe(failure))
            return None
    return guarded


class Telemetry:
    """The tracer and the instruments of this process (one for every engine in it)."""

    def __init__(self) -> None:
        trace.get_tracer_provider()  # loads a provider named by OTEL_PYTHON_TRACER_PROVIDER
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
        self._starting: dict[str, Span] = {}  # start spans until the journal says "created"
        self._lags: list[Callable[[], Iterable[tuple[Attributes, int]]]] = []
        self._depths: list[tuple[str, Callable[[], dict[str, int]]]] = []
        meter.create_observable_gauge("eoflow.kafka.consumer.lag", [self._observe_lag],
                                      "{message}", "Messages past a partition's position")
        meter.create_observable_gauge("eoflow.queue.depth", [self._observe_depth],
                                      "{run}", "Runs waiting in a queue (ENQUEUED)")

    # -- traces -----------------------------------------------------------------------------

    @staticmethod
    def recording() -> bool:
        """Whether an SDK is configured: without one, eoflow makes no span at all (the API's
        no-op spans cost a tenth of a short run), and only passes trace contexts on.

        Asked several times a run, so it reads the API's global provider directly:
        get_tracer_provider() looks the environment up on every call until a provider is
        set, and that lookup, four times a run, cost the Kafka workflow path about a tenth
        of its CPU time with the API installed and no SDK. An API without that global (a
        future version) gets the public call."""
        provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
        if provider is _UNKNOWN:
            provider = trace.get_tracer_provider()
        return provider is not None and not isinstance(
            provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))

    @_quiet
    def start_context(self, workflow_id: str, name: str,
                      parent: str | bytes | None = None) -> str | None:
        """Begin tracing a run's start (under `parent`, a traceparent, else the current span):
        the traceparent to journal with the run, None when there is no trace to continue.
        The span ends in `started`, once the journal says whether the run was created."""
        context = parse_traceparent(parent) if parent else None
        if not self.recording():  # pass the parent on: the caller's trace, if any
            return traceparent(trace.get_current_span(context))
        span = self.tracer.start_span(f"eoflow.start {name}", context, SpanKind.PRODUCER,
                                      origin_attributes(workflow_id, name))
        started = traceparent(span)
        if started is not None:
            self._starting[started] = span
        return started

    @_quiet
    def started(self, trace_context: str | None, created: bool) -> None:
        """A start was recorded: its span ends (and is sent) if it created the run; a start
        that found its run already there (a redelivered message, a repeated id) sends none."""
        span = self._starting.pop(trace_context, None) if trace_context else None
        if span is not None and created:
            span.end()

    def settle(self, contexts: list[str | None], created: list[bool]) -> None:
        """`started` for each start recorded (or not: `created` may be shorter)."""
        for number, context in enumerate(contexts):
            self.started(context, number < len(created) and created[number])

    @_quiet
    def begin_run(self, workflow_id: str, name: str, trace_context: str | None,
                  replaying: int) -> Handle | None:
        """An execution of a run, current until detached; under its journaled start."""
        if not self.recording():
            return None
        context = parse_traceparent(trace_context) if trace_context else None
        attributes = origin_attributes(workflow_id, name)
        attributes["eoflow.replayed_steps"] = replaying
        span = self.tracer.start_span(f"workflow {name}", context, SpanKind.CONSUMER,
                                      attributes)
        return span, otel_context.attach(set_span_in_context(span))

    @_quiet
    def begin_step(self, name: str, kind: str, number: int) -> Handle | None:
        if not self.recording():
            return None
        span = self.tracer.start_span(f"{kind} {name}", attributes={
            "eoflow.step.number": number, "eoflow.step.name": name, "eoflow.step.kind": kind})
        return span, otel_context.attach(set_span_in_context(span))

    @_quiet
    def detach(self, handle: Handle) -> None:
        """The span stops being current (in the thread that made it current)."""
        otel_context.detach(handle[1])  # type: ignore[arg-type]

    @_quiet
    def close(self, span: Span, outcome: str, error: BaseException | None = None,
              attempts: int | None = None) -> None:
        """End a span with its outcome (and its attempts, for a step); ERROR if it failed."""
        try:
            span.set_attribute("eoflow.outcome", outcome)
            if attempts is not None:
                span.set_attribute("eoflow.step.attempts", attempts)
            if error is not None:
                span.set_status(StatusCode.ERROR,
                                f"{type(error).__name__}: {codec.describe(error)}")
                try:
                    span.record_exception(error)
                except Exception:  # its __str__ raises: the SDK's own event cannot be made
                    span.add_event("exception", {"exception.type": type(error).__name__,
                                                 "exception.message": codec.describe(error)})
            elif outcome == "ERROR":
                span.set_status(StatusCode.ERROR)
        finally:
            span.end()

    def end(self, handle: Handle, outcome: str, error: BaseException | None = None,
            attempts: int | None = None) -> None:
        """detach, then close: a step's span, in the thread that ran it."""
        self.detach(handle)
        self.close(handle[0], outcome, error, attempts)

    @staticmethod
    def current_ids() -> tuple[str, str] | None:
        """(trace id, span id) of the current span, in hex, if there is one (for log lines)."""
        sc = trace.get_current_span().get_span_context()
        return (f"{sc.trace_id:032x}", f"{sc.span_id:016x}") if sc.is_valid else None

    @_quiet
    def retried(self, handle: Handle, attempt: int, error: BaseException) -> None:
        handle[0].add_event("eoflow.retry", {
            "eoflow.step.attempt": attempt, "exception.type": type(error).__name__,
            "exception.message": codec.describe(error)})

    # -- metrics ----------------------------------------------------------------------------

    @_quiet
    def run_started(self, name: str, count: int = 1) -> None:
        if count:
            self.runs_started.add(count, {"workflow": name})

    @_quiet
    def run_finished(self, name: str, status: str) -> None:
        self.runs_finished.add(1, {"workflow": name, "status": status})

    @_quiet
    def counted(self, what: str, count: int, **labels: str) -> None:
        """Add to one of the plain counters ("kafka_recorded", "kafka_quarantined")."""
        getattr(self, what).add(count, labels)

    @_quiet
    def queue_waited(self, queue: str, seconds: float) -> None:
        self.queue_wait.record(seconds, {"queue": queue})

    @_quiet
    def step_done(self, name: str, kind: str, seconds: float, attempts: int) -> None:
        attributes = {"workflow_step": name, "kind": kind}
        self.step_duration.record(seconds, attributes)
        if attempts > 1:
            self.step_retries.add(attempts - 1, attributes)

    @_quiet
    def commit_observer(self, writes: int, seconds: float) -> None:
        self.commit_duration.record(seconds)
        self.batch_size.record(writes)

    def watch(self, lag: Callable[[], Iterable[tuple[Attributes, int]]] | None = None,
              depth: Callable[[], dict[str, int]] | None = None,
              journal: str = "") -> Callable[[], None]:
        """Observe a consumer's lag, or the queue depths of `journal` (its label: two engines
        of a process on two journals give two series); returns how to stop."""
        source = (journal, depth) if depth is not None else None
        with self._lock:
            if lag is not None:
                self._lags.append(lag)
            if source is not None:
                self._depths.append(source)

        def unwatch() -> None:
            with self._lock:
                if lag is not None and lag in self._lags:
                    self._lags.remove(lag)
                if source is not None and source in self._depths:
                    self._depths.remove(source)
        return unwatch

    def _observe_lag(self, _options: Any) -> Iterable[metrics.Observation]:
        with self._lock:
            sources = list(self._lags)
        for source in sources:
            try:
                lags = list(source())
            except Exception as error:  # a consumer going away: no figure this time
                log.debug("consumer lag not observed: %s", error)
                continue
            for attributes, lag in lags:
                yield metrics.Observation(lag, attributes)

    def _observe_depth(self, _options: Any) -> Iterable[metrics.Observation]:
        with self._lock:
            sources = list(self._depths)
        for journal, source in sources:
            try:
                depths = source()
            except Exception as error:  # the journal is away: no figure this time
                log.debug("queue depth not observed: %s", error)
                continue
            for queue, depth in depths.items():
                yield metrics.Observation(depth, {"queue": queue, "journal": journal})


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

    from eoflow.errors import ConfigError

    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    metrics.set_meter_provider(provider)  # refused (the SDK logs it) if one was set before
    if metrics.get_meter_provider() is not provider:
        raise ConfigError("--metrics-port", "a meter provider is already set in this process "
                          "(by OTEL_* settings?); serve its metrics with its own exporter, "
                          "or leave --metrics-port out")
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)
    return f"http://{host}:{port}/metrics"
