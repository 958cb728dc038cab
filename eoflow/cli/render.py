"""Everything the CLI shows: rich tables and live views, and log formatting. The only module of
eoflow that imports rich.

In a terminal, tables fit its width: the ids people copy are never wrapped nor cut, and other
columns shrink (with an ellipsis) or are left out first. Outside a terminal (a pipe, a file),
output is plain lines, nothing wrapped nor cut: tables are tab-separated rows under a header
line, so that `eoflow workflows list | grep ERROR | cut -f1` works."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, Group, JustifyMethod
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)
STATUS_STYLE = {"SUCCESS": "green", "ERROR": "red", "PENDING": "yellow", "ENQUEUED": "cyan",
                "CANCELLED": "magenta", "PARKED": "bold red"}
GAP = 3  # characters between two table columns: padding, separator, padding (no edges)
CUT = 200  # characters of a value `workflows show` shows without --full


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """One readable line per event: rich on a terminal, plain text otherwise; or one JSON
    object per line (engine/logjson.py)."""
    root = logging.getLogger()
    root.handlers.clear()
    if log_format == "json":
        from eoflow.engine.logjson import JsonFormatter
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif sys.stderr.isatty():
        handler = RichHandler(console=err, show_path=verbose,
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


def _short(value: Any, width: int | None = CUT) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + f"… ({len(text)} characters; --full shows all)"


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', '?')}: {error.get('message', '')}"
    return "" if error is None else str(error)


def _plain(cell: Any) -> str:
    """A cell on one line: tabs and line breaks would split a row of a pipe or a table."""
    return " ".join(str(cell).split()) if any(c in str(cell) for c in "\t\r\n") else str(cell)


@dataclass(frozen=True)
class Column:
    """A table column. `id`: never wrapped nor cut (people copy it). `shrink`: cut with an
    ellipsis in a narrow terminal, down to `least` characters (else shown whole). `drop`: left
    out in a narrow terminal, the highest first (0: always shown)."""

    header: str
    id: bool = False
    shrink: bool = False
    least: int = 12
    drop: int = 0
    right: bool = False


def _widths(columns: Sequence[Column], natural: list[int], width: int) -> dict[int, int] | None:
    """The width of each column shown within `width` characters (keyed by its index), or None
    when even the ids and unshrinkable columns do not fit."""
    def least(i: int) -> int:
        return min(natural[i], columns[i].least) if columns[i].shrink else natural[i]

    shown = list(range(len(columns)))
    while sum(map(least, shown)) + GAP * (len(shown) - 1) > width:
        droppable = [i for i in shown if columns[i].drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: columns[i].drop))
    widths = {i: least(i) for i in shown}
    spare = width - sum(widths.values()) - GAP * (len(shown) - 1)
    growing = [i for i in shown if widths[i] < natural[i]]
    while spare > 0 and growing:  # the room left is shared by the shrunk columns, evenly
        for i in growing[:spare]:
            widths[i] += 1
        spare -= len(growing[:spare])
        growing = [i for i in growing if widths[i] < natural[i]]
    for i in shown:  # still too wide: shrunk columns give up their room, down to 4
        if spare < 0 and columns[i].shrink:
            give = min(-spare, widths[i] - min(4, widths[i]))
            widths[i] -= give
            spare += give
    return widths if spare >= 0 else None


def listing(columns: Sequence[Column], rows: Sequence[Sequence[Any]], title: str | None = None,
            wrap: bool = False) -> Table | str:
    """Rows as a table that fits the terminal (`wrap`: shrunk columns wrap instead of being
    cut), or, outside a terminal, as tab-separated lines under a header line (and the title)."""
    cells = [[_plain(cell) for cell in row] for row in rows]
    widths = None
    if out.is_terminal:
        natural = [max([len(c.header)] + [len(row[i]) for row in cells])
                   for i, c in enumerate(columns)]
        widths = _widths(columns, natural, out.width)
    if widths is None:  # a pipe, or a terminal narrower than the ids: plain lines
        lines = [] if title is None else [title]
        lines += ["\t".join(c.header for c in columns)] + ["\t".join(row) for row in cells]
        return "\n".join(lines)
    left_out = [c.header for i, c in enumerate(columns) if i not in widths]
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  caption=f"not shown at this width: {', '.join(left_out)} (--json shows all)"
                  if left_out else None)
    for i, width in widths.items():
        column = columns[i]
        justify: JustifyMethod = "right" if column.right else "left"
        if column.id or not column.shrink:
            table.add_column(column.header, no_wrap=True, min_width=width, justify=justify)
        else:
            table.add_column(column.header, width=width, no_wrap=not wrap, justify=justify,
                             overflow="fold" if wrap else "ellipsis")
    for row in cells:
        table.add_row(*[_status(row[i]) if columns[i].header == "status" else row[i]
                        for i in widths])
    return table


def _page(parts: Sequence[Any]) -> Group | str:
    """Parts of a page: shown one after the other (plain lines outside a terminal)."""
    if out.is_terminal:
        spaced: list[Any] = []
        for part in parts:
            spaced += [Text(""), Text(part) if isinstance(part, str) else part]
        return Group(*spaced)
    return "\n\n".join(str(part) for part in parts)


def status_view(report: dict[str, Any]) -> Group | str:
    counts = [[status, str(count)] for status, count in report["workflows"].items() if count]
    parts: list[Any] = [listing([Column("status"), Column("count", right=True)],
                                counts or [["none yet", "0"]], title="Workflows")]
    if report["by_name"]:
        parts.append(listing(
            [Column("workflow", shrink=True)]
            + [Column(status.lower(), right=True) for status in STATUS_STYLE],
            [[name, *(str(by_status.get(s, "")) for s in STATUS_STYLE)]
             for name, by_status in report["by_name"].items()], title="By workflow"))
    if report["recent_failures"]:
        parts.append(listing(
            [Column("workflow id", id=True), Column("name", shrink=True), Column("status"),
             Column("error", shrink=True, least=20, drop=1)],
            [[f["workflow_id"], f["name"], f["status"], _error_text(f["error"])]
             for f in report["recent_failures"]], title="Recent failures"))
    if report["quarantined"]:
        parts.append(listing(
            [Column("key", id=True), Column("handler", shrink=True), Column("attempts"),
             Column("status"), Column("error", shrink=True, least=20, drop=1)],
            [[str(q["key"]), str(q["handler"]), str(q["attempts"]), str(q["status"]),
              _error_text(q["error"])] for q in report["quarantined"]],
            title="Quarantined messages"))
    if report["kafka"]:
        parts.append(listing(
            [Column("group", id=True), Column("topic", id=True), Column("partition"),
             Column("last offset"), Column("messages"), Column("updated", drop=1)],
            [[str(k["group"]), str(k["topic"]), str(k["partition"]), str(k["last_offset"]),
              str(k["messages"]), k["updated_at"] or ""] for k in report["kafka"]],
            title="Kafka (recorded in this journal)"))
    if report.get("lag"):
        parts.append(listing(
            [Column("group", id=True), Column("topic", id=True), Column("partition"),
             Column("journal offset", right=True), Column("committed", right=True),
             Column("end", right=True), Column("lag", right=True)],
            [[str(r["group"]), str(r["topic"]), str(r["partition"]),
              "" if r["journal_offset"] is None else str(r["journal_offset"]),
              "" if r["committed"] is None else str(r["committed"]), str(r["end"]),
              str(r["lag"])] for r in report["lag"]],
            title="Kafka consumer lag (asked from the brokers)"))
    if report.get("executors"):
        parts.append(listing(
            [Column("executor", id=True), Column("state"), Column("runs owned", right=True),
             Column("last heartbeat", drop=1), Column("version", drop=2)],
            [[str(e["executor_id"]), str(e["state"]), str(e["runs_owned"]),
              str(e["last_heartbeat_at"] or ""), str(e.get("version") or "")]
             for e in report["executors"]],
            title="Executors"))
    if report.get("versions"):
        parts.append(listing(
            [Column("version", id=True), Column("pending", right=True),
             Column("enqueued", right=True)],
            [[str(v["version"] or "(none: started by a client)"), str(v["pending"]),
              str(v["enqueued"])] for v in report["versions"]],
            title="Live runs by app version"))
    rate = report["throughput"]
    parts.append(f"Throughput: {rate['succeeded']} succeeded in the last "
                 f"{rate['window_seconds']} s ({rate['per_second']}/s); last 5 s: "
                 f"{rate.get('last_5s_per_second', 0)}/s")
    if out.is_terminal:
        return Group(Panel.fit(Text(report["journal"], style="bold"), title="eoflow status"),
                     _page(parts))
    return f"eoflow status: {report['journal']}\n\n" + str(_page(parts))


def workflows_table(rows: list[dict[str, Any]]) -> Table | str:
    return listing(
        [Column("workflow id", id=True), Column("name", shrink=True), Column("status"),
         Column("created", drop=2), Column("error", shrink=True, least=20, drop=1),
         # new columns go last: scripts reading the columns by place keep working
         Column("executor", drop=3), Column("version", drop=4)],
        [[row["workflow_id"], row["name"], row["status"], row["created_at"] or "",
          _error_text(row["error"]), row.get("executor") or "", row.get("version") or ""]
         for row in rows])


def quarantine_table(rows: list[dict[str, Any]]) -> Table | str:
    return listing(
        [Column("key", id=True), Column("handler", shrink=True), Column("status"),
         Column("attempts"), Column("quarantined", drop=2),
         Column("error", shrink=True, least=20, drop=1)],
        [[str(q.get("key", "")), str(q.get("handler", "")), str(q.get("status", "")),
          str(q.get("attempts", "")), str(q.get("quarantined_at") or ""),
          _error_text(q.get("error"))] for q in rows])


def _duration(ms: Any) -> str:
    """The journal keeps whole milliseconds: 0 is a step shorter than one."""
    return "<1" if ms == 0 else str(ms)


def workflow_view(detail: dict[str, Any], full: bool = False) -> Group | str:
    """One run: its fields, then its steps (values cut at CUT characters unless `full`)."""
    cut = None if full else CUT
    fields = [("workflow", detail["workflow_id"]), ("name", detail["name"]),
              ("status", detail["status"]), ("created", detail["created_at"] or ""),
              *([("executor", detail["executor"])] if detail.get("executor") else []),
              *([("version", detail["version"])] if detail.get("version") else []),
              ("inputs", _short(_shown(detail["inputs"]), cut))]
    if detail["status"] == "SUCCESS":
        fields.append(("output", _short(_shown(detail["output"]), cut)))
    if detail["error"]:
        fields.append(("error", _error_text(detail["error"])))
    steps = listing(
        [Column("#", right=True), Column("name", shrink=True, least=10),
         Column("kind", shrink=True, least=11), Column("attempts", right=True),
         Column("ms", right=True, shrink=True, least=6),
         Column("output / error", shrink=True, least=10, drop=1)],
        [[str(s["step"]), str(s["name"]), str(s["kind"]), str(s["attempts"]),
          _duration(s["duration_ms"]),
          _error_text(s["error"]) if s["error"] else _short(_shown(s["output"]), cut)]
         for s in detail["steps"]], title="Steps", wrap=full)
    traceback = detail.get("traceback")
    if not out.is_terminal:
        head = "\n".join(f"{name}\t{_plain(value)}" for name, value in fields)
        return "\n\n".join([head, str(steps)] + (
            [f"Traceback (as recorded)\n{traceback.rstrip()}"] if traceback else []))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")  # values fold onto more lines; nothing is lost
    for name, value in fields:
        grid.add_row(name, _status(value) if name == "status" else value)
    parts: list[Any] = [grid, Text(""), steps]
    if traceback:
        parts.append(Panel(Text(traceback.rstrip()), title="Traceback (as recorded)",
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


def watch(view: Callable[[], Any], line: Callable[[], str], every: float,
          lines: bool = False) -> None:
    """Until interrupted (Ctrl-C): in a terminal, show `view()` and refresh it every `every`
    seconds, with the time of the last refresh; with `lines`, or outside a terminal (a pipe, a
    file), print `line()` instead, one line a refresh, flushed at once."""
    try:
        if lines or not out.is_terminal:
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


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _when(ms: Any) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def info_view(info: dict[str, Any]) -> Group | str:
    retention = info["retention_ms"]
    facts = listing([Column("about", id=True), Column("value")], [
        ("journal", info["journal"]), ("schema", info["schema_version"]),
        *([("file", f"{_bytes(info['file_bytes'])} ({info['pages']} pages of "
                    f"{info['page_size']} B, {info['free_pages']} free for reuse)"),
           ("WAL", _bytes(info["wal_bytes"]))] if "file_bytes" in info else
          [("tables", f"{_bytes(info['table_bytes'])} with their indexes (on the server)")]),
        ("runs", f"{info['runs']} (oldest created {_when(info['oldest_run_ms'])}, newest "
                 f"{_when(info['newest_run_ms'])})"),
        ("retention", "keep everything" if retention is None else
         f"{retention / 1000:g}s (set by the last `eoflow run`)")])
    rows = listing([Column("table", id=True), Column("rows", right=True)],
                   sorted(info["rows"].items()))
    return _page([facts, rows])


def check_view(report: dict[str, Any]) -> Group | str:
    rows = []
    for c in report["checks"]:
        state = "ok" if not c["problems"] else f"{c['problems']} problem(s)"
        if c["skipped"] and not c["problems"]:
            state += f" ({c['skipped']})"
        rows.append((c["check"], state, "; ".join(c["examples"]) or c["description"]))
    verdict = "every check holds" if report["ok"] else "PROBLEMS FOUND"
    return _page([listing([Column("check", id=True), Column("result"),
                           Column("detail", shrink=True)], rows, wrap=True),
                  f"{report['journal']}: {verdict}"])


def progress(copied: int, total: int) -> None:
    """A progress line on stderr (a terminal only), rewritten in place."""
    if err.is_terminal:
        err.file.write(f"\r{copied}/{total} pages ({100 * copied // max(total, 1)}%)")
        err.file.flush()
        if copied >= total:
            err.file.write("\n")
