"""Everything the CLI shows: rich tables and live views, and log formatting. The only module of
eoflow that imports rich."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)
STATUS_STYLE = {"SUCCESS": "green", "ERROR": "red", "PENDING": "yellow", "ENQUEUED": "cyan",
                "CANCELLED": "magenta", "PARKED": "bold red"}


def setup_logging(verbose: bool) -> None:
    """One readable line per event: rich on a terminal, plain text otherwise."""
    root = logging.getLogger()
    root.handlers.clear()
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(console=err, show_path=verbose,
                                               rich_tracebacks=verbose)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kafka").setLevel(logging.WARNING if verbose else logging.CRITICAL)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def error_line(message: str) -> None:
    err.print(Text("eoflow: error: ", style="bold red") + Text(message), soft_wrap=True)


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def status_view(report: dict[str, Any]) -> Group:
    counts = Table(title="Workflows", box=box.SIMPLE_HEAD)
    counts.add_column("status")
    counts.add_column("count", justify="right")
    for status, count in report["workflows"].items():
        if count:
            counts.add_row(_status(status), str(count))
    if not any(report["workflows"].values()):
        counts.add_row("none yet", "0")
    names = Table(title="By workflow", box=box.SIMPLE_HEAD)
    names.add_column("workflow")
    for status in STATUS_STYLE:
        names.add_column(status.lower(), justify="right")
    for name, by_status in report["by_name"].items():
        names.add_row(name, *(str(by_status.get(s, "")) for s in STATUS_STYLE))
    parts: list[Any] = [counts]
    if report["by_name"]:
        parts.append(names)
    if report["recent_failures"]:
        failures = Table(title="Recent failures", box=box.SIMPLE_HEAD)
        for column in ("workflow", "name", "status", "error"):
            failures.add_column(column)
        for f in report["recent_failures"]:
            error = f["error"] or {"type": "", "message": ""}
            failures.add_row(f["workflow_id"], f["name"], _status(f["status"]),
                             _short(f"{error['type']}: {error['message']}"))
        parts.append(failures)
    if report["quarantined"]:
        quarantine = Table(title="Quarantined messages", box=box.SIMPLE_HEAD)
        quarantine.add_column("key", overflow="fold")
        for column in ("handler", "attempts", "status", "error"):
            quarantine.add_column(column)
        for q in report["quarantined"]:
            error = q["error"] or {"type": "", "message": ""}
            quarantine.add_row(q["key"], q["handler"], str(q["attempts"]), q["status"],
                               _short(f"{error['type']}: {error['message']}", 50))
        parts.append(quarantine)
    if report["kafka"]:
        kafka = Table(title="Kafka (recorded in this journal)", box=box.SIMPLE_HEAD)
        for column in ("group", "topic", "partition", "last offset", "messages", "updated"):
            kafka.add_column(column)
        for k in report["kafka"]:
            kafka.add_row(k["group"], k["topic"], str(k["partition"]), str(k["last_offset"]),
                          str(k["messages"]), k["updated_at"] or "")
        parts.append(kafka)
    rate = report["throughput"]
    parts.append(Text(f"Throughput: {rate['succeeded']} workflows succeeded in the last "
                      f"{rate['window_seconds']}s ({rate['per_second']}/s)"))
    return Group(Panel.fit(Text(report["journal"], style="bold"), title="eoflow status"),
                 *parts)


def workflows_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("workflow id", overflow="fold")
    for column in ("name", "status", "created", "error"):
        table.add_column(column)
    for row in rows:
        error = row["error"]
        table.add_row(row["workflow_id"], row["name"], _status(row["status"]),
                      row["created_at"] or "",
                      _short(f"{error['type']}: {error['message']}", 40) if error else "")
    return table


def workflow_view(detail: dict[str, Any]) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("workflow", detail["workflow_id"])
    head.add_row("name", detail["name"])
    head.add_row("status", _status(detail["status"]))
    head.add_row("created", detail["created_at"] or "")
    head.add_row("inputs", _short(detail["inputs"], 100))
    if detail["status"] == "SUCCESS":
        head.add_row("output", _short(detail["output"], 100))
    if detail["error"]:
        head.add_row("error", f"{detail['error']['type']}: {detail['error']['message']}")
    steps = Table(title="Steps", box=box.SIMPLE_HEAD)
    for column in ("#", "name", "kind", "attempts", "ms", "output / error"):
        steps.add_column(column)
    for s in detail["steps"]:
        outcome = (f"{s['error']['type']}: {s['error']['message']}" if s["error"]
                   else _short(s["output"]))
        steps.add_row(str(s["step"]), s["name"], s["kind"], str(s["attempts"]),
                      str(s["duration_ms"]), outcome)
    parts: list[Any] = [head, steps]
    if detail.get("traceback"):
        parts.append(Panel(Text(detail["traceback"].rstrip()), title="Traceback (as recorded)",
                           box=box.SIMPLE, expand=False))
    return Group(*parts)


def show(renderable: Any) -> None:
    out.print(renderable)


def line(text: str) -> None:
    """One line of plain output, never wrapped (scripts may parse it)."""
    out.print(text, soft_wrap=True, highlight=False)


def watch(view: Callable[[], Any], every: float) -> None:
    """Show `view()` and refresh it every `every` seconds until interrupted (Ctrl-C)."""
    with Live(view(), console=out, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(every)
                live.update(view())
        except KeyboardInterrupt:
            pass
