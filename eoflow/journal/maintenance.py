"""Looking after a journal from outside its engine: backup, info and check (export.py exports).

Each works while the app runs: backup and info read one snapshot (WAL readers never block the
engine), check reads without writing anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, cast

import apsw

from eoflow.errors import JournalError
from eoflow.journal import retention
from eoflow.journal.backend import Conn
from eoflow.journal.connection import connect, translate
from eoflow.journal.kafka_keys import message_key
from eoflow.journal.opening import Side, open_side
from eoflow.journal.schema import require_journal
from eoflow.journal.sql import Q
from eoflow.journal.urls import is_url, redact

BACKUP_PAGES = 1024  # pages copied per step of a backup (4 MiB), between progress reports
EXAMPLES = 5  # ids shown per failed check


def _read(path: str) -> apsw.Connection:
    conn = connect(path, readonly=True)
    try:
        require_journal(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


# -- backup ----------------------------------------------------------------------------------

@dataclass
class BackupReport:
    destination: str
    pages: int
    bytes: int
    seconds: float


def backup(path: str, destination: str, *, force: bool = False,
           progress: Callable[[int, int], None] | None = None) -> BackupReport:
    """Copy the journal at `path` to `destination` as it is at one moment, while the app goes
    on writing (SQLite's online backup, reading one snapshot). The copy is written beside the
    destination and renamed into place only once complete, so a failed backup never leaves a
    half-written file under the destination's name. `progress(copied, total)` is called with
    page counts after each step."""
    if is_url(path):
        raise JournalError(redact(path), "is a PostgreSQL database: back it up with the "
                                         "server's tools (pg_dump), or copy it to a file with "
                                         "`eoflow journal copy`")
    if os.path.exists(destination) and not force:
        raise JournalError(destination, "already exists; choose another file, or pass --force "
                                        "to replace it")
    if os.path.exists(destination) and os.path.samefile(path, destination):
        raise JournalError(destination, "is the journal itself; choose another file")
    started = time.perf_counter()
    source = _read(path)
    partial = f"{destination}.partial"
    for leftover in (partial, f"{partial}-wal", f"{partial}-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    try:
        target = apsw.Connection(partial)
    except apsw.Error as error:
        source.close()
        raise translate(destination, error) from error
    try:
        # One read transaction for the whole copy: every step reads the same snapshot, so the
        # engine's commits meanwhile neither restart the backup nor leak into the copy.
        source.execute("BEGIN")
        source.execute("SELECT count(*) FROM sqlite_master").fetchall()
        with target.backup("main", source, "main") as copy:
            while not copy.done:
                copy.step(BACKUP_PAGES)
                if progress is not None:
                    progress(copy.page_count - copy.remaining, copy.page_count)
            pages = copy.page_count
        source.execute("COMMIT")
        target.execute("PRAGMA journal_mode=DELETE").fetchall()  # one self-contained file
        target.close()
        os.replace(partial, destination)
    except apsw.Error as error:
        target.close()
        if os.path.exists(partial):
            os.remove(partial)
        raise translate(destination, error) from error
    finally:
        source.close()
    return BackupReport(destination, pages, os.path.getsize(destination),
                        time.perf_counter() - started)


# -- info ------------------------------------------------------------------------------------

def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _integer(conn: Conn, query: str) -> int:
    return cast(int, conn.execute(query).fetchall()[0][0])


def _tables(conn: apsw.Connection) -> list[str]:
    return [str(name) for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'eoflow\\_%' "
        "ESCAPE '\\' ORDER BY name")]


def info(path: str) -> dict[str, Any]:
    """Sizes, storage settings, rows per eoflow table, oldest and newest run, retention."""
    if is_url(path):
        return _server_info(open_side(path, readonly=True))
    conn = _read(path)
    try:
        conn.execute("BEGIN")  # one snapshot for every figure
        pragma: dict[str, int] = {
            name: _integer(conn, f"PRAGMA {name}")
            for name in ("page_size", "page_count", "freelist_count", "auto_vacuum")}
        rows = {table: _integer(conn, f'SELECT count(*) FROM "{table}"')
                for table in _tables(conn)}
        runs, oldest, newest = conn.execute(Q["info_runs"]).fetchall()[0]
        retention_ms = retention.retention_in_force(conn)
        version = require_journal(conn, path)
        conn.execute("COMMIT")
    except apsw.Error as error:
        raise translate(path, error) from error
    finally:
        conn.close()
    return {
        "journal": path, "schema_version": version,
        "file_bytes": _size(path), "wal_bytes": _size(f"{path}-wal"),
        "page_size": pragma["page_size"], "pages": pragma["page_count"],
        "free_pages": pragma["freelist_count"],
        "auto_vacuum": {0: "none", 1: "full", 2: "incremental"}.get(pragma["auto_vacuum"],
                                                                   "unknown"),
        "rows": rows, "runs": runs, "oldest_run_ms": oldest, "newest_run_ms": newest,
        "retention_ms": retention_ms,
    }


def _server_info(side: Side) -> dict[str, Any]:
    """`info` for a PostgreSQL journal: the server keeps the files, so sizes are per table."""
    conn = side.conn
    try:
        side.backend.snapshot(conn)
        tables = [str(name) for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'eoflow%' ORDER BY tablename")]
        rows = {table: _integer(conn, f'SELECT count(*) FROM "{table}"') for table in tables}
        size = sum(_integer(conn, f"SELECT pg_total_relation_size('\"{table}\"')")
                   for table in tables)
        runs, oldest, newest = conn.execute(Q["info_runs"]).fetchall()[0]
        retention_ms = retention.retention_in_force(conn)
        version = int(conn.execute(Q["get_meta"], ("schema_version",)).fetchone()[0])
        conn.execute("ROLLBACK")
    except side.backend.errors as error:
        raise side.backend.translate(side.where, error) from error
    finally:
        conn.close()
    return {"journal": side.where, "backend": side.backend.name, "schema_version": version,
            "table_bytes": size, "rows": rows, "runs": runs, "oldest_run_ms": oldest,
            "newest_run_ms": newest, "retention_ms": retention_ms}


# -- check -----------------------------------------------------------------------------------

@dataclass
class Finding:
    """One check: `problems` is 0 when the invariant holds; `examples` name some offenders."""

    check: str
    description: str
    problems: int = 0
    examples: list[str] = field(default_factory=list)
    skipped: str | None = None  # why this check could not run

    def add(self, example: str) -> None:
        self.problems += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class CheckReport:
    journal: str
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.problems == 0 for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"journal": self.journal, "ok": self.ok,
                "checks": [asdict(f) for f in self.findings]}


QUARANTINE_STATUSES = ("QUARANTINED", "RETRIED", "DROPPED")


def check(path: str, *, app_db: str | None = None, handlers: Iterable[str] | None = None,
          quick: bool = False) -> CheckReport:
    """The database's integrity check (SQLite's; `quick`: its faster form) and eoflow's own
    invariants. `handlers`, the Kafka handlers of the app (when it was given), lets quarantine
    entries be checked against them; `app_db` is where the app's Kafka keys are when it keeps
    its data elsewhere."""
    side = open_side(path, readonly=True)
    app = None if app_db is None else open_side(app_db, tx_only=True, readonly=True)
    conn = side.conn
    handler_set = None if handlers is None else set(handlers)
    checks: list[tuple[str, str, Callable[[Finding], None]]] = [
        *[(f"{s.backend.name}-integrity ({_label(s)})",
           "the database's own integrity check", partial(_integrity, s, quick))
          for s in (side, app) if s is not None],
        ("orphan-steps", "every step belongs to a run in the journal",
         partial(_rows, conn, "check_orphan_steps", lambda r: f"{r[0]} ({r[1]} steps)")),
        ("step-gaps", "every finished run's steps are numbered 1..n",
         partial(_rows, conn, "check_step_gaps",
                 lambda r: f"{r[0]} ({r[1]} steps numbered {r[2]}..{r[3]})")),
        ("run-statuses", "every run has a known status",
         partial(_rows, conn, "check_statuses", lambda r: f"{r[0]} ({r[1]})")),
        ("kafka-marks", "every partition's mark is backed by its message's record",
         partial(_marks, side, app)),
        ("quarantine", "every quarantine entry has a known status" + (
            "" if handler_set is None else " and a handler of the app"),
         partial(_quarantine, conn, handler_set)),
    ]
    errors: tuple[type[BaseException], ...] = (
        apsw.Error, *side.backend.errors, *(() if app is None else app.backend.errors))
    try:
        findings = [_run_check(*c, errors=errors) for c in checks]
    finally:
        conn.close()
        if app is not None:
            app.conn.close()
    return CheckReport(side.where, findings)


def _label(side: Side) -> str:
    return side.where if is_url(side.where) else os.path.basename(side.where)


def _run_check(name: str, description: str, fill: Callable[[Finding], None], *,
               errors: tuple[type[BaseException], ...]) -> Finding:
    """Run one check; one that cannot even read what it checks (a corrupt page) fails, naming
    why."""
    finding = Finding(name, description)
    try:
        fill(finding)
    except errors as error:
        finding.add(f"could not be read: {type(error).__name__}: {error}")
    return finding


def _integrity(side: Side, quick: bool, finding: Finding) -> None:
    problems = side.backend.integrity_problems(side.conn, quick)
    if problems is None:
        finding.skipped = "the server checks its own pages (pg_amcheck does more)"
        return
    for line in problems:
        finding.add(line)


def _rows(conn: Conn, query: str, show: Callable[[Any], str],
          finding: Finding) -> None:
    for row in conn.execute(Q[query]):
        finding.add(show(row))


def _marks(side: Side, app: Side | None, finding: Finding) -> None:
    """Each partition's mark (the highest offset recorded) is backed by that message's record:
    a run, an applied key or a quarantine entry. Retention relies on it: below the mark, the
    consumer never reads again."""
    conn = side.conn
    keys = [s.conn for s in (side, app)
            if s is not None and s.backend.has_table(s.conn, "eoflow_kafka_keys")]
    for row in conn.execute(Q["prune_marks"]).fetchall():
        group, topic, partition, offset, incarnation = cast(tuple[str, str, int, int, int], row)
        key = message_key(group, topic, partition, offset, incarnation)
        found = conn.execute(Q["check_run_exists"], (key,)).fetchone() or \
            conn.execute(Q["check_quarantined_exists"], (key,)).fetchone() or \
            any(c.execute(Q["kafka_key_exists"], (key,)).fetchone() for c in keys)
        if not found:
            finding.add(key + ("" if app is not None else
                               " (if the app keeps its data in another file, pass --app-db)"))


def _quarantine(conn: Conn, handlers: set[str] | None, finding: Finding) -> None:
    if handlers is None:
        finding.skipped = "handlers not checked: give the app (--app APP) to check them"
    for key, handler, status in conn.execute(Q["check_quarantine"]):
        if status not in QUARANTINE_STATUSES:
            finding.add(f"{key} (status {status})")
        elif handlers is not None and handler not in handlers:
            finding.add(f"{key} (handler {handler!r} is not in the app)")
