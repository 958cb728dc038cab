"""`eoflow journal trace ID`: a run's spans rebuilt from the journal (journal/traces.py), as a
timeline, as JSON, or as OTLP/JSON to send to a tracing backend afterwards. Thin."""

from __future__ import annotations

import json

import click

from eoflow.cli import render
from eoflow.cli.options import journal_option, json_option
from eoflow.errors import WorkflowNotFoundError
from eoflow.journal import traces
from eoflow.journal.opening import open_reader

BAR = 32  # characters of the timeline's bars


def _duration(ms: int) -> str:
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def timeline(spans: list[traces.SpanView], now_ms: int | None = None) -> str:
    """One line per span: indented under its parent, a bar where it falls in the run, its
    duration and what it ended with; a span still running is drawn to its last record."""
    begin = min(s.start_ms for s in spans)
    end = max(max(s.end_ms or s.start_ms for s in spans), now_ms or 0, begin + 1)
    scale = BAR / (end - begin)
    width = max(len("  " * s.depth + s.name) for s in spans)
    lines = [f"trace {spans[0].trace_id}   {_duration(end - begin)} in all"]
    for span in spans:
        stop = span.end_ms if span.end_ms is not None else end
        first = min(BAR - 1, int((span.start_ms - begin) * scale))
        length = max(1, int((stop - begin) * scale) - first)
        bar = " " * first + "█" * min(length, BAR - first)
        outcome = span.attributes.get("eoflow.outcome", "")
        if span.end_ms is None:
            outcome = "running"
        attempts = span.attributes.get("eoflow.step.attempts", 1)
        recoveries = span.attributes.get("eoflow.recovery_attempts", 0)
        notes = [outcome] + ([f"{attempts} attempts"] if attempts > 1 else []) + \
            ([f"recovered {recoveries}x"] if recoveries else []) + \
            ([span.error] if span.error else [])
        lines.append(f"{'  ' * span.depth + span.name:<{width}}  |{bar:<{BAR}}| "
                     f"{_duration(stop - span.start_ms):>9}  {'  '.join(notes)}")
    return "\n".join(lines)


@click.command("trace")
@click.argument("workflow_id")
@journal_option
@json_option
@click.option("--otlp", is_flag=True, help="Print an OTLP/JSON export request instead (POST "
                                            "it to a collector's /v1/traces).")
def trace(workflow_id: str, journal: str, as_json: bool, otlp: bool) -> None:
    """Rebuild the spans of run WORKFLOW_ID (and its child runs) from the journal alone and
    print them as a timeline: tracing for runs that ran before tracing was switched on."""
    if otlp and as_json:
        raise click.UsageError("--json and --otlp are two output formats: give one")
    reader = open_reader(journal)
    try:
        spans = traces.rebuild(reader, workflow_id)
    finally:
        reader.close()
    if spans is None:
        raise WorkflowNotFoundError(workflow_id)
    if otlp:
        click.echo(json.dumps(traces.otlp(spans), indent=1))
    elif as_json:
        render.print_json(traces.as_dicts(spans))
    else:
        click.echo(timeline(spans))
