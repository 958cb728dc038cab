"""The eoflow commands. Thin: parse, call one library function, render."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import click

from eoflow.cli import render
from eoflow.cli.options import (
    brokers_option,
    is_verbose,
    journal_option,
    json_option,
    producer_brokers_option,
)
from eoflow.errors import ConfigError, WorkflowNotFoundError
from eoflow.journal import admin, views
from eoflow.journal.opening import open_reader
from eoflow.journal.reader import Reader
from eoflow.journal.records import Status

T = TypeVar("T")


@click.command()
@click.argument("app", envvar="EOFLOW_APP")
@journal_option
@click.option("--app-db", envvar="EOFLOW_APP_DB", show_envvar=True,
              type=click.Path(dir_okay=False),
              help="Keep the app's data (and @transaction records) in this SQLite file instead "
                   "of the journal.")
@brokers_option
@click.option("--workers", type=click.IntRange(min=1), envvar="EOFLOW_WORKERS",
              show_envvar=True, help="Worker threads for workflows [default: 64].")
@click.option("--retention", envvar="EOFLOW_RETENTION", show_envvar=True, metavar="DURATION",
              help="Forget finished runs (and applied Kafka keys) this long after they "
                   "finished, e.g. 90s, 12h, 7d [default: keep everything].")
@click.option("--app-version", envvar="EOFLOW_APP_VERSION", show_envvar=True, metavar="TEXT",
              help="The version of the app's code, which every run it starts records "
                   "[default: a hash of the code of its workflows, steps and transactions].")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              envvar="EOFLOW_LOG_FORMAT", show_envvar=True, show_default=True,
              help="json: one JSON object per log line, with the run's workflow id, name and "
                   "step where there is one.")
@click.option("--lease", envvar="EOFLOW_LEASE", show_envvar=True, metavar="DURATION",
              help="How long this engine's heartbeat holds its runs: when it stops beating "
                   "(killed, paused), the other engines on the journal take its runs over "
                   "after this long [default: 10s].")
@click.option("--metrics-port", envvar="EOFLOW_METRICS_PORT", show_envvar=True,
              type=click.IntRange(1, 65535), metavar="PORT",
              help="Serve the engine's metrics (OpenTelemetry) in Prometheus' text format at "
                   "http://HOST:PORT/metrics; needs `pip install 'eoflow[prometheus]'`. It sets "
                   "the process's meter provider: an app that sets its own serves its own.")
@click.option("--metrics-host", envvar="EOFLOW_METRICS_HOST", show_envvar=True,
              default="0.0.0.0", show_default=True, metavar="HOST",
              help="The address --metrics-port listens on (127.0.0.1: this machine only).")
@click.pass_context
def run(ctx: click.Context, app: str, journal: str, app_db: str | None, brokers: str | None,
        workers: int | None, retention: str | None, app_version: str | None,
        log_format: str, lease: str | None, metrics_port: int | None,
        metrics_host: str) -> None:
    """Run APP (a .py file or a module name) until SIGINT or SIGTERM.

    Opens the journal, resumes pending workflows, starts the Kafka consumers the app declares,
    and shuts down gracefully on the first signal (a second one exits at once; the journal is
    safe either way).
    """
    from eoflow.engine.apploader import load_app
    from eoflow.engine.service import serve

    render.setup_logging(is_verbose(ctx), log_format)
    if metrics_port is not None:
        from eoflow.engine.telemetry import serve_metrics

        logging.getLogger("eoflow.cli").info(
            "metrics: %s", serve_metrics(metrics_port, metrics_host))
    loaded = load_app(app)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # second interrupt: leave now; WAL keeps the journal consistent
            os.write(2, b"eoflow: second interrupt: exiting now; unfinished workflows resume "
                        b"on the next start\n")
            os._exit(130)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    serve(loaded, stop, journal=journal, app_db=app_db, workers=workers, brokers=brokers,
          retention=retention, lease=lease, app_version=app_version)


def _reader(journal: str) -> Reader:
    return open_reader(journal)


def _read(journal: str, query: Callable[[Reader], T]) -> T:
    """Run one read-only query on the journal (never an engine, never a lock)."""
    reader = _reader(journal)
    try:
        return query(reader)
    finally:
        reader.close()


def _emit(data: Any, as_json: bool, view: Callable[[Any], Any]) -> None:
    if as_json:
        render.print_json(data)
    else:
        render.show(view(data))


@click.group()
def workflows() -> None:
    """List, inspect, cancel, resume and fork workflow runs."""


@workflows.command("list")
@journal_option
@json_option
@click.option("--status", "status_",
              type=click.Choice([s.value for s in Status], case_sensitive=False),
              help="Only runs with this status.")
@click.option("--name", help="Only runs of this workflow (`handle` also finds `Orders.handle`).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many runs, the newest first.")
@click.option("--version", "version",
              help="Only runs started by this version of the app's code (see `eoflow status`).")
def list_workflows(journal: str, as_json: bool, status_: str | None, name: str | None,
                   limit: int, version: str | None) -> None:
    """List recent runs, newest first."""
    rows = _read(journal, lambda reader: views.list_workflows(
        reader, Status(status_.upper()) if status_ else None, name, limit, version))
    _emit(rows, as_json, render.workflows_table)


@workflows.command("show")
@click.argument("workflow_id")
@journal_option
@json_option
@click.option("--full", is_flag=True, help="Show inputs and output uncut.")
def show_workflow(workflow_id: str, journal: str, as_json: bool, full: bool) -> None:
    """Show one run: inputs, output or error, and every step. Kafka values and keys show as
    their text (or JSON) where they are UTF-8; --json keeps their base64 beside."""
    def detail(reader: Reader) -> dict[str, Any]:
        found = views.workflow_detail(reader, workflow_id)
        if found is None:
            raise WorkflowNotFoundError(workflow_id)
        return found

    _emit(_read(journal, detail), as_json, lambda data: render.workflow_view(data, full))


@workflows.command("cancel")
@click.argument("workflow_id")
@journal_option
def cancel(workflow_id: str, journal: str) -> None:
    """Cancel a run; a running app stops it at its next step boundary."""
    admin.cancel(journal, workflow_id)
    render.line(f"cancelled {workflow_id}")


@workflows.command("resume")
@click.argument("workflow_id", required=False)
@click.option("--any-version", is_flag=True,
              help="Let an engine of any version of the app run it (an engine runs only the "
                   "runs its own version started, unless told so).")
@click.option("--version", "version", metavar="V",
              help="With --any-version and no ID: every PENDING and ENQUEUED run of version V.")
@journal_option
def resume(workflow_id: str | None, any_version: bool, version: str | None,
           journal: str) -> None:
    """Resume a cancelled, parked or failed run from its last recorded step."""
    if workflow_id is None:
        if not (any_version and version):
            raise click.UsageError("give a workflow ID, or --any-version --version V for "
                                   "every live run of a version")
        moved = admin.release_version(journal, version)
        render.line(f"{moved} run(s) of version {version} may now run on any version "
                    "(running engines take them within a second)")
        return
    if version is not None:
        raise click.UsageError("--version goes without a workflow ID (it names every run of "
                               "that version)")
    admin.resume(journal, workflow_id, any_version)
    render.line(f"resumed {workflow_id} (a running app picks it up within a second; "
                "otherwise the next `eoflow run` does)")


def _json_argument(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as error:
        raise click.BadParameter(f"not JSON ({error}); quote it for your shell, e.g. "
                                 "'{\"id\": 7}'", param_hint=what) from None


@workflows.command("start")
@click.argument("name")
@click.option("--input", "inputs", metavar="JSON", default="[]", show_default=True,
              help="The arguments: a JSON list (positional), or an object (by name).")
@click.option("--id", "workflow_id", help="The run's id [default: a new one].")
@click.option("--queue", help="Enqueue it in this queue (declared by the app) instead.")
@journal_option
def start(name: str, inputs: str, workflow_id: str | None, queue: str | None,
          journal: str) -> None:
    """Start a run of workflow NAME (as the app names it) for a running app to execute: the
    app picks it up within a second (eoflow.Client does the same from Python)."""
    from eoflow.client import Client

    given = _json_argument(inputs, "--input")
    args, kwargs = (given, {}) if isinstance(given, list) else \
        ([], given) if isinstance(given, dict) else ([given], {})
    with Client(journal) as client:
        started = client.enqueue(queue, name, *args, workflow_id=workflow_id, **kwargs) \
            if queue else client.start(name, *args, workflow_id=workflow_id, **kwargs)
    render.line(f"started {started}" + (f" in queue {queue}" if queue else ""))


@click.command("send")
@click.argument("workflow_id")
@click.argument("message")
@click.option("--topic", help="The topic its eoflow.recv waits on [default: none].")
@journal_option
def send(workflow_id: str, message: str, topic: str | None, journal: str) -> None:
    """Send MESSAGE (JSON) to run WORKFLOW_ID: its eoflow.recv() receives it."""
    from eoflow.client import Client

    with Client(journal) as client:
        client.send(workflow_id, _json_argument(message, "MESSAGE"), topic)
    render.line(f"sent to {workflow_id}")


@workflows.command("fork")
@click.argument("workflow_id")
@click.option("--from-step", type=click.IntRange(min=1), required=True,
              help="Reuse the recorded steps before this one; run again from it.")
@click.option("--new-id", help="Id of the new run [default: random].")
@journal_option
def fork(workflow_id: str, from_step: int, new_id: str | None, journal: str) -> None:
    """Start a new run of WORKFLOW_ID's workflow and inputs, reusing its steps before N."""
    target = new_id or uuid.uuid4().hex
    admin.fork(journal, workflow_id, from_step, target)
    render.line(f"forked {workflow_id} at step {from_step} as {target}")


@click.group()
def quarantine() -> None:
    """Kafka messages whose handler kept failing, or that the client could not decode."""


@quarantine.command("list")
@journal_option
@json_option
def list_quarantine(journal: str, as_json: bool) -> None:
    """List quarantined messages with their error."""
    rows = _read(journal, lambda reader: [
        views.quarantined_view(q) for q in reader.quarantined(status=None, limit=1000)])
    _emit(rows, as_json, render.quarantine_table)


@quarantine.command("retry")
@click.argument("key", required=False)
@click.option("--all", "every", is_flag=True, help="Every quarantined message.")
@click.option("--handler", help="Every quarantined message of this handler.")
@click.option("--topic", help="Every quarantined message of this topic.")
@journal_option
def retry_quarantined(key: str | None, every: bool, handler: str | None, topic: str | None,
                      journal: str) -> None:
    """Apply quarantined messages again (after a fix): KEY, or --all, --handler H, --topic T.
    Each still applies at most once, in partition and offset order."""
    if (key is None) == (not (every or handler or topic)):
        raise click.UsageError("give a KEY, or --all, --handler or --topic (not both)")
    if key is not None:
        admin.request_quarantine_retry(journal, key)
        keys = [key]
    else:
        keys = admin.request_quarantine_retries(journal, handler, topic)
    render.line(f"retry of {len(keys)} message(s) requested: the running app (or the next "
                "`eoflow run`) applies them" + ("" if keys else " (none matched)"))


@quarantine.command("drop")
@click.argument("key")
@journal_option
def drop_quarantined(key: str, journal: str) -> None:
    """Give up on a quarantined message: it is never applied (its partition went on past it
    when it was quarantined). Retention forgets it after its window, like a retried one."""
    admin.drop_quarantined(journal, key)
    render.line(f"dropped {key}")


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), envvar="EOFLOW_BROKER_PORT",
              show_envvar=True, help="Port to listen on [default: a free one].")
def broker(port: int | None) -> None:
    """Run an in-memory Kafka-compatible broker (Tansu) for demos and local development.

    Ctrl-C, SIGTERM and SIGHUP stop it; so does this command being killed."""
    from eoflow.devbroker import LocalBroker

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    local = LocalBroker(port=port, die_with_parent=True)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    local.start()
    render.line(f"broker listening: --brokers {local.address}  "
                f"(export EOFLOW_KAFKA_BROKERS={local.address}); Ctrl-C stops it")
    try:
        assert local.process is not None
        local.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()


@click.command()
@click.argument("topic")
@producer_brokers_option
@click.option("--count", type=click.IntRange(min=1),
              help="Send COUNT generated JSON messages instead of reading lines from stdin.")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="The id of the first generated message (with --count).")
@click.option("--key", help="Send every message with this key (so to one partition).")
@click.option("--partitions", type=click.IntRange(min=1), default=3, show_default=True,
              help="Partitions for the topic, if it has to be created.")
def produce(topic: str, brokers: str | None, count: int | None, start: int, key: str | None,
            partitions: int) -> None:
    """Send lines from stdin (or --count generated JSON messages) to TOPIC, creating it."""
    from eoflow.engine.config import DEFAULT_BROKERS, parse_brokers
    from eoflow.engine.kafka.defs import check_topic_name
    from eoflow.engine.kafka.source import produce_values

    check_topic_name(topic)
    addresses = parse_brokers(brokers) if brokers else DEFAULT_BROKERS
    if count is None:
        if sys.stdin.isatty():
            raise ConfigError("produce", "give --count N, or pipe lines into stdin")
        values: Any = (line.rstrip("\n").encode() for line in sys.stdin)
    else:
        values = (f'{{"id": {i}, "sent_at": {time.time():.3f}}}'.encode()
                  for i in range(start, start + count))
    sent = produce_values(addresses, topic, values, partitions,
                          key.encode() if key is not None else None)
    render.line(f"sent {sent} message(s) to {topic} on {','.join(addresses)}")


@click.group()
def kafka() -> None:
    """The Kafka topics an app consumes into its journal."""


@kafka.command("restart-topic")
@click.argument("topic")
@click.option("--group", "group_id", required=True, help="The consumer group (group_id).")
@journal_option
def restart_topic(topic: str, group_id: str, journal: str) -> None:
    """Consume TOPIC again from its start after it was recreated (its offsets started again).

    Its messages are then keyed under a new incarnation, so they never collide with the ones
    already applied. Run it when the app's log says the topic was recreated; then restart the
    app."""
    incarnation = admin.restart_topic(journal, group_id, topic)
    render.line(f"topic {topic} (group {group_id}) is at incarnation {incarnation}: restart the "
                "app to consume it from its start")


def register(group: click.Group) -> None:
    for command in (run, workflows, quarantine, kafka, broker, produce, send):
        group.add_command(command)
