"""`eoflow journal ...`: prune, back up, export, check and describe a journal, while its app
runs. Thin: parse, call one function of eoflow.journal, render."""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import click

from eoflow.cli import render
from eoflow.cli.options import journal_option, json_option
from eoflow.errors import ConfigError
from eoflow.journal import admin, copy, export, maintenance
from eoflow.journal.records import Status
from eoflow.journal.urls import redact

app_db_option = click.option(
    "--app-db", envvar="EOFLOW_APP_DB", show_envvar=True, type=click.Path(dir_okay=False),
    help="The app's database, when it keeps its data (and its Kafka keys) apart from the "
         "journal (as `eoflow run --app-db`).")


@click.group()
def journal() -> None:
    """Look after a journal: prune, backup, export, check, info, copy, trace. Safe while the app
    runs."""


@journal.command()
@journal_option
@app_db_option
@json_option
@click.option("--older-than", required=True, metavar="DURATION",
              help="Forget finished runs (and applied Kafka keys) that finished longer ago "
                   "than this, e.g. 90s, 12h, 7d.")
@click.option("--dry-run", is_flag=True, help="Count what would go; remove nothing.")
def prune(journal: str, app_db: str | None, as_json: bool, older_than: str,
          dry_run: bool) -> None:
    """Forget finished runs older than a window, as `eoflow run --retention` does: never a
    live run, a child of a live parent, a quarantined message, nor the record of a Kafka
    message the consumer could read again. Works in small batches while the app runs."""
    from eoflow.engine.config import parse_duration

    window = parse_duration("--older-than", older_than)
    report = admin.prune(journal, window, app_db=app_db, dry_run=dry_run)
    data = {"dry_run": dry_run, "older_than_s": window, **report.as_dict()}
    if as_json:
        render.print_json(data)
        return
    verb = "would remove" if dry_run else "removed"
    render.line(f"{verb} {report.runs} run(s), {report.steps} step(s), {report.tx_outputs} "
                f"transaction record(s), {report.events} event(s), {report.messages} "
                f"message(s), {report.kafka_keys} Kafka key(s), {report.quarantine} retried "
                f"quarantine entries (retried) finished over {older_than} ago ({report.batches} "
                f"batch(es), longest {report.longest_batch_ms:.1f} ms)")


@journal.command()
@click.argument("destination", type=click.Path(dir_okay=False))
@journal_option
@json_option
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
def backup(destination: str, journal: str, as_json: bool, force: bool) -> None:
    """Copy the journal to DESTINATION as it is at one moment, while the app goes on (SQLite's
    online backup). The copy is a journal of its own: open it with --journal DESTINATION."""
    report = maintenance.backup(journal, destination, force=force,
                                progress=None if as_json else render.progress)
    if as_json:
        render.print_json(vars(report))
    else:
        render.line(f"backed up {journal} to {destination}: {report.pages} pages, "
                    f"{report.bytes} bytes in {report.seconds:.2f}s")


@journal.command("copy")
@click.argument("source")
@click.argument("destination")
@json_option
@click.option("--live", is_flag=True,
              help="Copy SOURCE while its app runs: a snapshot to look at, never to run (both "
                   "journals run would apply messages twice).")
def copy_journal(source: str, destination: str, as_json: bool, live: bool) -> None:
    """Copy the journal at SOURCE to DESTINATION, each a SQLite file or a postgresql:// URL:
    runs, steps, Kafka keys and offsets, messages, events, quarantine. DESTINATION must hold no
    journal data yet (a new file, an empty database). Stop SOURCE's app first (or pass
    --live); no app may start on SOURCE until the copy ends."""
    rows = copy.copy(source, destination, live=live)
    if as_json:
        render.print_json({"source": redact(source), "destination": redact(destination),
                           "rows": rows})
    else:
        render.line(f"copied {redact(source)} to {redact(destination)}: "
                    f"{rows['eoflow_workflows']} runs, {rows['eoflow_steps']} steps, "
                    f"{sum(rows.values())} rows in all")


def _since(raw: str | None) -> int | None:
    """A moment in ms: `raw` ago for a duration (7d), or an ISO date-time (local time)."""
    if raw is None:
        return None
    from eoflow.engine.config import parse_duration

    try:
        return int(datetime.datetime.fromisoformat(raw).timestamp() * 1000)
    except ValueError:
        pass
    try:
        return int((time.time() - parse_duration("--since", raw)) * 1000)
    except ConfigError:
        raise ConfigError("--since", f"expected a duration like 7d or a date-time like "
                                     f"2026-12-01T08:00, got {raw!r}") from None


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as out:
        yield out


@journal.command("export")
@journal_option
@click.option("--since", metavar="DURATION|DATETIME",
              help="Only runs changed since then: 7d (ago) or 2026-12-01T08:00.")
@click.option("--status", "status_",
              type=click.Choice([s.value for s in Status], case_sensitive=False),
              help="Only runs with this status.")
@click.option("--workflow", "workflow_id", metavar="ID", help="Only this run.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write to this file [default: stdout].")
def export_runs(journal: str, since: str | None, status_: str | None,
                workflow_id: str | None, output: str | None) -> None:
    """Write runs as JSON Lines, one run per line with its steps, oldest first, in constant
    memory. Values appear as stored: tagged JSON (README, "Exporting a journal")."""
    filters: dict[str, Any] = {"since_ms": _since(since), "workflow_id": workflow_id,
                               "status": Status(status_.upper()) if status_ else None}
    with _output(output) as out:
        count = export.export(journal, out, **filters)
    if output not in (None, "-"):
        render.line(f"exported {count} run(s) to {output}")


@journal.command()
@journal_option
@app_db_option
@json_option
@click.option("--app", "app", metavar="APP",
              help="The app (.py file or module): also check that quarantined messages belong "
                   "to one of its Kafka handlers.")
@click.option("--quick", is_flag=True, help="SQLite's quick_check instead of its full "
                                             "integrity_check (faster on a large journal).")
def check(journal: str, app_db: str | None, as_json: bool, app: str | None,
          quick: bool) -> None:
    """Check the journal: SQLite's integrity check and eoflow's own invariants. Exit status
    0 only when every check holds (1 otherwise)."""
    handlers = None
    if app is not None:
        from eoflow.engine.apploader import load_app

        handlers = load_app(app).consumers
    report = maintenance.check(journal, app_db=app_db, handlers=handlers, quick=quick)
    if as_json:
        render.print_json(report.as_dict())
    else:
        render.show(render.check_view(report.as_dict()))
    if not report.ok:
        click.get_current_context().exit(1)


@journal.command()
@journal_option
@json_option
def info(journal: str, as_json: bool) -> None:
    """Size, free pages, rows per table, oldest and newest run, retention in force."""
    data = maintenance.info(journal)
    if as_json:
        render.print_json(data)
    else:
        render.show(render.info_view(data))
