"""`eoflow verify APP`: replay a journal's runs against APP's code, offline (engine/verify.py).
Thin: load the app, read the journal, render; exit 1 if any run diverges."""

from __future__ import annotations

import time

import click

from eoflow.cli import render
from eoflow.cli.options import journal_option, json_option
from eoflow.engine.config import parse_duration
from eoflow.journal.records import Status


@click.command()
@click.argument("app", envvar="EOFLOW_APP")
@journal_option
@click.option("--status", "statuses", multiple=True, metavar="S",
              type=click.Choice([s.value for s in Status], case_sensitive=False),
              help="Check the runs with this status (repeatable) [default: PENDING and "
                   "ENQUEUED runs, and runs finished within --since].")
@click.option("--since", default="1d", show_default=True, metavar="DURATION",
              help="With no --status: also check the runs that finished this recently.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many runs, oldest "
                                                           "first.")
@json_option
def verify(app: str, journal: str, statuses: tuple[str, ...], since: str, limit: int | None,
           as_json: bool) -> None:
    """Replay recorded runs against APP's code, offline, and report every divergence (the
    run, the step, the recorded and the called name, the patch): a check to run against a copy
    of production's journal before a deploy. Nothing runs: no step, no transaction, no Kafka
    client; the journal is only read, also while the app runs. Exits 1 on a divergence."""
    from eoflow.engine import verify as replay
    from eoflow.engine.apploader import load_app
    from eoflow.journal.opening import open_reader

    load_app(app)
    wanted = tuple(s.upper() for s in statuses) or replay.LIVE
    since_ms = None if statuses else \
        int((time.time() - parse_duration("since", since)) * 1000)
    reader = open_reader(journal)
    try:
        report = replay.verify(reader, replay.candidates(reader, wanted, since_ms, limit))
    finally:
        reader.close()
    data = report.as_dict()
    if as_json:
        render.print_json(data)
    else:
        rate = f" ({data['runs_per_second']:,.0f} runs/s)" if report.seconds else ""
        partial = f"; {len(data['partial'])} checked only up to a step that needs a live " \
            "engine (--json lists them)" if data["partial"] else ""
        render.line(f"verified {report.checked} run(s) in {report.seconds:.2f} s{rate}: "
                    f"{len(data['divergences'])} divergence(s){partial}")
        if data["divergences"]:
            render.show(render.listing(
                [render.Column("workflow id", id=True), render.Column("workflow"),
                 render.Column("step"), render.Column("recorded"), render.Column("called"),
                 render.Column("patch"), render.Column("problem", shrink=True, least=30)],
                [[d["workflow_id"], d["name"], str(d["step"] or ""), d["recorded"] or "",
                  d["called"] or "", d["patch"] or "", d["problem"]]
                 for d in data["divergences"]]))
    if data["divergences"]:
        raise SystemExit(1)
