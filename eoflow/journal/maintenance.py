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
from eoflow.journal.connection import connect, translate
from eoflow.journal.kafka_keys import message_key
from eoflow.journal.schema import has_table, require_journal
from eoflow.journal.sql import Q

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


def _integer(conn: apsw.Connection, query: str) -> int:
    return cast(int, conn.execute(query).fetchall()[0][0])


def _tables(conn: apsw.Connection) -> list[str]:
    return [str(name) for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'eoflow\\_%' "
        "ESCAPE '\\' ORDER BY name")]


def info(path: str) -> dict[str, Any]:
    """Sizes, storage settings, rows per eoflow table, oldest and newest run, retention."""
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
    """SQLite's integrity check (`quick`: its faster form) and eoflow's own invariants.
    `handlers`, the Kafka handlers of the app (when it was given), lets quarantine entries be
    checked against them; `app_db` is where the app's Kafka keys are when it keeps its data
    elsewhere."""
    conn = _read(path)
    app = None if app_db is None else connect(app_db, readonly=True)
    handler_set = None if handlers is None else set(handlers)
    checks: list[tuple[str, str, Callable[[Finding], None]]] = [
        (f"sqlite-integrity ({os.path.basename(path)})", "SQLite's own integrity check",
         partial(_integrity, conn, quick)),
        *([] if app is None or app_db is None else [
            (f"sqlite-integrity ({os.path.basename(app_db)})", "SQLite's own integrity check",
             partial(_integrity, app, quick))]),
        ("orphan-steps", "every step belongs to a run in the journal",
         partial(_rows, conn, "check_orphan_steps", lambda r: f"{r[0]} ({r[1]} steps)")),
        ("step-gaps", "every finished run's steps are numbered 1..n",
         partial(_rows, conn, "check_step_gaps",
                 lambda r: f"{r[0]} ({r[1]} steps numbered {r[2]}..{r[3]})")),
        ("run-statuses", "every run has a known status",
         partial(_rows, conn, "check_statuses", lambda r: f"{r[0]} ({r[1]})")),
        ("kafka-marks", "every partition's mark is backed by its message's record",
         partial(_marks, conn, app)),
        ("quarantine", "every quarantine entry has a known status" + (
            "" if handler_set is None else " and a handler of the app"),
         partial(_quarantine, conn, handler_set)),
    ]
    try:
        findings = [_run_check(*c) for c in checks]
    finally:
        conn.close()
        if app is not None:
            app.close()
    return CheckReport(path, findings)


def _run_check(name: str, description: str, fill: Callable[[Finding], None]) -> Finding:
    """Run one check; one that cannot even read what it checks (a corrupt page) fails, naming
    why."""
    finding = Finding(name, description)
    try:
        fill(finding)
    except apsw.Error as error:
        finding.add(f"could not be read: {type(error).__name__}: {error}")
    return finding


def _integrity(conn: apsw.Connection, quick: bool, finding: Finding) -> None:
    pragma = "PRAGMA quick_check" if quick else "PRAGMA integrity_check"
    for (message,) in conn.execute(pragma):
        for line in str(message).splitlines():
            if line != "ok" and not line.startswith("*** in database"):
                finding.add(line)


def _rows(conn: apsw.Connection, query: str, show: Callable[[Any], str],
          finding: Finding) -> None:
    for row in conn.execute(Q[query]):
        finding.add(show(row))


def _marks(conn: apsw.Connection, app: apsw.Connection | None, finding: Finding) -> None:
    """Each partition's mark (the highest offset recorded) is backed by that message's record:
    a run, an applied key or a quarantine entry. Retention relies on it: below the mark, the
    consumer never reads again."""
    keys = [c for c in (conn, app) if c is not None and has_table(c, "eoflow_kafka_keys")]
    for row in conn.execute(Q["prune_marks"]).fetchall():
        group, topic, partition, offset, incarnation = cast(tuple[str, str, int, int, int], row)
        key = message_key(group, topic, partition, offset, incarnation)
        found = conn.execute(Q["check_run_exists"], (key,)).fetchone() or \
            conn.execute(Q["check_quarantined_exists"], (key,)).fetchone() or \
            any(c.execute(Q["kafka_key_exists"], (key,)).fetchone() for c in keys)
        if not found:
            finding.add(key + ("" if app is not None else
                               " (if the app keeps its data in another file, pass --app-db)"))


def _quarantine(conn: apsw.Connection, handlers: set[str] | None, finding: Finding) -> None:
    if handlers is None:
        finding.skipped = "handlers not checked: give the app (--app APP) to check them"
    for key, handler, status in conn.execute(Q["check_quarantine"]):
        if status not in QUARANTINE_STATUSES:
            finding.add(f"{key} (status {status})")
        elif handlers is not None and handler not in handlers:
            finding.add(f"{key} (handler {handler!r} is not in the app)")
