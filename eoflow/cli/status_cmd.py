"""`eoflow status`: a journal's summary, offline; with --lag, the consumers' lag as the brokers
say. Thin: read, ask, render."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from eoflow.cli import render
from eoflow.cli.options import brokers_option, journal_option, json_option
from eoflow.journal import views
from eoflow.journal.opening import open_reader


@click.command()
@journal_option
@json_option
@click.option("--watch", is_flag=True, help="Refresh every second until interrupted.")
@click.option("--lag", is_flag=True, help="Also ask the brokers how far each consumer group "
                                          "is behind, per partition.")
@brokers_option
def status(journal: str, as_json: bool, watch: bool, lag: bool, brokers: str | None) -> None:
    """Summarize a journal: workflows by status and name, failures, quarantined messages,
    Kafka offsets and throughput. Read-only; safe while the app runs. Offline unless --lag."""
    if lag and watch:
        raise click.UsageError("--lag asks the brokers once: use it without --watch")
    reader = open_reader(journal)
    try:
        if lag:
            report = views.status_report(reader)
            report["lag"] = views.lag_view(reader, _broker_offsets(brokers))
            if as_json:
                render.print_json(report)
            else:
                render.show(render.status_view(report))
        elif watch:  # in a pipe, or with --json: one line (or one JSON object) a refresh
            render.watch(lambda: render.status_view(views.status_report(reader)),
                         lambda: views.status_line(views.status_report(reader), as_json),
                         every=1.0, lines=as_json)
        elif as_json:
            render.print_json(views.status_report(reader))
        else:
            render.show(render.status_view(views.status_report(reader)))
    finally:
        reader.close()


def _broker_offsets(brokers: str | None) -> Callable[[str, list[str]], Any]:
    from eoflow.engine.config import DEFAULT_BROKERS, parse_brokers
    from eoflow.engine.kafka.source import partition_offsets

    addresses = parse_brokers(brokers) if brokers else DEFAULT_BROKERS
    return lambda group, topics: partition_offsets(addresses, group, topics)
