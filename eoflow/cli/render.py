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


def _shown(value: Any) -> Any:
    """A value for people: bytes shown as their text or JSON where views found one."""
    if isinstance(value, list):
        return [_shown(item) for item in value]
    if isinstance(value, dict):
        tag = value.get("$eoflow")
        if tag == "bytes" and ("json" in value or "text" in value):
            return value.get("json", value.get("text"))
        if tag in ("dataclass", "tuple", "set", "frozenset") and "v" in value:
            return _shown(value["v"])  # its fields (or items), without the tag
        if tag == "unreadable":
            return f"<unreadable: {value.get('v')!r}>"
        return {key: _shown(item) for key, item in value.items()}
    return value


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
                      f"{rate['window_seconds']}s ({rate['per_second']}/s; "
                      f"{rate.get('last_5s_per_second', 0)}/s over the last 5 s)"))
    return Group(Panel.fit(Text(report["journal"], style="bold"), title="eoflow status"),
                 *parts)


def listing(headers: list[str], rows: list[list[str]], ids: int = 1) -> Table | str:
    """A table whose first `ids` columns (the ids users copy) are never wrapped nor cut; in a
    narrow terminal the other columns shrink (with an ellipsis) first. Outside a terminal (a
    pipe, a file): plain tab-separated lines with a header, one row a line, nothing cut."""
    if not out.is_terminal:
        lines = ["\t".join(headers)] + ["\t".join(c.replace("\t", " ") for c in row)
                                         for row in rows]
        return "\n".join(lines)
    table = Table(box=box.SIMPLE_HEAD)
    for number, header in enumerate(headers):
        if number < ids:
            longest = max([len(header)] + [len(row[number]) for row in rows])
            table.add_column(header, no_wrap=True, min_width=longest)
        else:
            table.add_column(header, overflow="ellipsis", no_wrap=True, ratio=1)
    for row in rows:
        table.add_row(*[_status(c) if headers[i] == "status" else c for i, c in enumerate(row)])
    return table


def workflows_table(rows: list[dict[str, Any]]) -> Table | str:
    return listing(["workflow id", "name", "status", "created", "error"], [
        [row["workflow_id"], row["name"], row["status"], row["created_at"] or "",
         f"{row['error']['type']}: {row['error']['message']}" if row["error"] else ""]
        for row in rows])


def quarantine_table(rows: list[dict[str, Any]]) -> Table | str:
    return listing(["key", "handler", "status", "attempts", "quarantined", "error"], [
        [q.get("key", ""), str(q.get("handler", "")), str(q.get("status", "")),
         str(q.get("attempts", "")), str(q.get("quarantined_at") or ""),
         _error_text(q.get("error"))]
        for q in rows])


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', '?')}: {error.get('message', '')}"
    return "" if error is None else str(error)


def workflow_view(detail: dict[str, Any], full: bool = False) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")  # values fold onto more lines; nothing is lost
    head.add_row("workflow", detail["workflow_id"])
    head.add_row("name", detail["name"])
    head.add_row("status", _status(detail["status"]))
    head.add_row("created", detail["created_at"] or "")
    width = 10**9 if full else 200
    head.add_row("inputs", _short(_shown(detail["inputs"]), width))
    if detail["status"] == "SUCCESS":
        head.add_row("output", _short(_shown(detail["output"]), width))
    if detail["error"]:
        head.add_row("error", f"{detail['error']['type']}: {detail['error']['message']}")
    steps = Table(title="Steps", box=box.SIMPLE_HEAD)
    for column in ("#", "name", "kind", "attempts", "ms", "output / error"):
        steps.add_column(column)
    for s in detail["steps"]:
        outcome = (f"{s['error']['type']}: {s['error']['message']}" if s["error"]
                   else _short(s["output"]))
        steps.add_row(str(s["step"]), s["name"], s["kind"], str(s["attempts"]),
                      str(s["duration_ms"]) if s["duration_ms"] else "<1", outcome)
    parts: list[Any] = [head, steps]
    if detail.get("traceback"):
        parts.append(Panel(Text(detail["traceback"].rstrip()), title="Traceback (as recorded)",
                           box=box.SIMPLE, expand=False))
    return Group(*parts)


def show(renderable: Any) -> None:
    if isinstance(renderable, str):  # plain lines for a pipe: written as they are
        sys.stdout.write(renderable + "\n")
    else:
        out.print(renderable)


def line(text: str) -> None:
    """One line of plain output, never wrapped (scripts may parse it)."""
    out.print(text, soft_wrap=True, highlight=False)


def watch(view: Callable[[], Any], line: Callable[[], str], every: float) -> None:
    """Until interrupted (Ctrl-C): in a terminal, show `view()` and refresh it every `every`
    seconds, with the time of the last refresh; elsewhere (a pipe, a file), print `line()`,
    one line a refresh, flushed at once."""
    try:
        if not out.is_terminal:
            while True:
                sys.stdout.write(line() + "\n")
                sys.stdout.flush()
                time.sleep(every)

        def stamped() -> Group:
            return Group(view(), Text(f"refreshed at {time.strftime('%H:%M:%S')} "
                                      f"(every {every:g}s; Ctrl-C stops)", style="dim"))

        with Live(stamped(), console=out, refresh_per_second=2) as live:
            while True:
                time.sleep(every)
                live.update(stamped())
    except KeyboardInterrupt:
        pass
