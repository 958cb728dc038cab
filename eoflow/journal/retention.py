"""Forgetting finished runs older than a retention window, in small batches.

Plain functions on a connection, so that the engine runs them on its writer (between other
writes, one batch per transaction) and `eoflow journal prune` on a connection of its own, while
the app runs. What goes: finished runs (SUCCESS, ERROR, CANCELLED) last changed before the
cutoff, with their steps, transaction records, events and the messages sent to them; Kafka keys
applied before the cutoff; quarantine entries an operator retried or dropped.

What never goes: a PENDING, ENQUEUED or PARKED run, a finished child of a live parent, a message
still in quarantine, and any record of a Kafka message the consumer could read again. The
consumer never reads a partition below its mark (the highest offset recorded: on assignment it
starts past it), so a message's key (or run, or quarantine entry) may go once its offset is
below the mark; the message at the mark itself is kept, so that `eoflow journal check` can see
that the mark is backed by a record. Keys of an older incarnation of a topic (see `eoflow kafka
restart-topic`) are never read again either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from functools import partial
from typing import Protocol, TypeVar, cast

from eoflow.journal.backend import Conn
from eoflow.journal.kafka_keys import parse_message_key
from eoflow.journal.sql import Q

BATCH = 100  # runs (or keys) per transaction: each holds the writer ~20 ms at most (soak.py)


@dataclass
class PruneReport:
    """What a prune removed (or, dry, would remove)."""

    runs: int = 0
    steps: int = 0
    tx_outputs: int = 0
    events: int = 0
    messages: int = 0
    kafka_keys: int = 0
    quarantine: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0  # the longest the writer was held by one batch

    def add(self, other: PruneReport) -> None:
        for f in fields(self):
            if f.name == "longest_batch_ms":
                self.longest_batch_ms = max(self.longest_batch_ms, other.longest_batch_ms)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def removed(self) -> int:
        return (self.runs + self.steps + self.tx_outputs + self.events + self.messages
                + self.kafka_keys + self.quarantine)

    def as_dict(self) -> dict[str, int | float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Marks:
    """What the consumer will never read again, per group, topic and partition."""

    def __init__(self, conn: Conn) -> None:
        self.highest: dict[tuple[str, str, int], tuple[int, int]] = {
            (g, t, int(p)): (int(o), int(i))
            for g, t, p, o, i in conn.execute(Q["prune_marks"])}
        self.incarnation: dict[tuple[str, str], int] = {
            (g, t): int(i) for g, t, i in conn.execute(Q["prune_incarnations"])}

    def forgettable(self, key: str) -> bool:
        """True unless `key` is a Kafka message the consumer could still read again."""
        parsed = parse_message_key(key)
        if parsed is None:
            return True
        topic = (parsed.group_id, parsed.topic)
        if parsed.incarnation < self.incarnation.get(topic, 0):
            return True  # a former incarnation of the topic: never read again
        mark = self.highest.get((parsed.group_id, parsed.topic, parsed.partition))
        return mark is not None and mark[1] == parsed.incarnation and parsed.offset < mark[0]


T = TypeVar("T")


class Transact(Protocol):
    """Runs a function in one write transaction of a database and returns its result."""

    def __call__(self, work: Callable[[Conn], T], /) -> T: ...


def prune(journal: Transact, app_db: Transact | None, cutoff_ms: int, *,
          batch: int = BATCH) -> Iterator[PruneReport]:
    """Everything retention removes, one batch per transaction: finished runs, then Kafka
    keys, then quarantine entries. `app_db` is the separate application database, if any
    (its transaction records and Kafka keys go there). Stop iterating to stop early."""
    yield from prune_runs(journal, cutoff_ms, tx_outputs_here=app_db is None,
                          forget_outputs=None if app_db is None else
                          lambda ids: app_db(lambda conn: forget_tx_outputs(conn, ids)),
                          batch=batch)
    yield from prune_keys(app_db or journal, lambda: journal(Marks), cutoff_ms, batch=batch)
    yield from prune_quarantine(journal, cutoff_ms, batch=batch)


def prune_runs(transact: Transact, cutoff_ms: int, *, tx_outputs_here: bool,
               forget_outputs: Callable[[list[str]], int] | None = None,
               batch: int = BATCH) -> Iterator[PruneReport]:
    """Remove finished runs last changed before `cutoff_ms`, one batch per `transact` call;
    yields each batch's report. `forget_outputs` removes the transaction records kept in a
    separate application database (after the journal's batch: a finished run never reads
    them again)."""
    cursor: tuple[int, int] = (0, 0)
    while True:
        report, cursor, removed = _timed(transact, partial(
            _runs_batch, cutoff_ms=cutoff_ms, cursor=cursor, batch=batch,
            tx_outputs_here=tx_outputs_here))
        if report.batches == 0:
            return
        if removed and forget_outputs is not None:
            report.tx_outputs += forget_outputs(removed)
        yield report


def _runs_batch(conn: Conn, *, cutoff_ms: int, cursor: tuple[int, int], batch: int,
                tx_outputs_here: bool) -> tuple[PruneReport, tuple[int, int], list[str]]:
    report, removed = PruneReport(), []
    marks = Marks(conn)
    rows = cast(list[tuple[int, str, int]], conn.execute(
        Q["prune_runs_page"], (cutoff_ms, cursor[0], cursor[1], batch)).fetchall())
    ids = [workflow_id for _, workflow_id, _ in rows if marks.forgettable(workflow_id)]
    if ids:
        report.steps += _delete(conn, "prune_steps", ids)
        report.events += _delete(conn, "prune_events", ids)
        report.messages += _delete(conn, "prune_messages", ids)
        if tx_outputs_here:
            report.tx_outputs += _delete(conn, "prune_tx_outputs", ids)
        removed = [str(w) for (w,) in conn.execute(Q["prune_workflows"], (json.dumps(ids),))]
        report.runs += len(removed)
    report.batches = 1 if rows else 0
    return report, ((int(rows[-1][2]), int(rows[-1][0])) if rows else cursor), removed


def forget_tx_outputs(conn: Conn, workflow_ids: list[str]) -> int:
    """Remove the transaction records of finished runs from an application database."""
    return _delete(conn, "prune_tx_outputs", workflow_ids)


def prune_keys(transact: Transact, marks: Callable[[], Marks], cutoff_ms: int, *,
               batch: int = BATCH) -> Iterator[PruneReport]:
    """Remove the Kafka keys applied before `cutoff_ms` that the consumer will never read
    again (`marks` reads them from the journal, which may be another file)."""
    cursor: tuple[int, str] = (0, "")
    while True:
        report, cursor, _ = _timed(transact, partial(
            _keys_batch, cutoff_ms=cutoff_ms, cursor=cursor, batch=batch, marks=marks()))
        if report.batches == 0:
            return
        yield report


def _keys_batch(conn: Conn, *, cutoff_ms: int, cursor: tuple[int, str], batch: int,
                marks: Marks) -> tuple[PruneReport, tuple[int, str], list[str]]:
    report = PruneReport()
    rows = cast(list[tuple[str, int]], conn.execute(
        Q["prune_keys_page"], (cutoff_ms, cursor[0], cursor[1], batch)).fetchall())
    report.kafka_keys += _delete(conn, "prune_keys", [k for k, _ in rows if marks.forgettable(k)])
    report.batches = 1 if rows else 0
    return report, ((int(rows[-1][1]), str(rows[-1][0])) if rows else cursor), []


def prune_quarantine(transact: Transact, cutoff_ms: int, *,
                     batch: int = BATCH) -> Iterator[PruneReport]:
    """Remove quarantine entries retried or dropped before `cutoff_ms`."""
    cursor = ""
    while True:
        report, cursor, _ = _timed(transact, partial(
            _quarantine_batch, cutoff_ms=cutoff_ms, cursor=cursor, batch=batch))
        if report.batches == 0:
            return
        yield report


def _quarantine_batch(conn: Conn, *, cutoff_ms: int, cursor: str, batch: int
                      ) -> tuple[PruneReport, str, list[str]]:
    report = PruneReport()
    marks = Marks(conn)
    rows = cast(list[tuple[str]], conn.execute(
        Q["prune_quarantine_page"], (cutoff_ms, cursor, batch)).fetchall())
    report.quarantine += _delete(conn, "prune_quarantined",
                                 [key for (key,) in rows if marks.forgettable(key)])
    report.batches = 1 if rows else 0
    return report, (str(rows[-1][0]) if rows else cursor), []


def _delete(conn: Conn, query: str, keys: list[str]) -> int:
    """Run a delete of queries.sql on `keys` (as one JSON array); how many rows went."""
    if not keys:
        return 0
    conn.execute(Q[query], (json.dumps(keys),))
    return conn.changes()


C = TypeVar("C")
Batch = tuple[PruneReport, C, list[str]]


def _timed(transact: Transact, work: Callable[[Conn], Batch[C]]) -> Batch[C]:
    def timed(conn: Conn) -> Batch[C]:
        started = time.perf_counter()
        result = work(conn)
        result[0].longest_batch_ms = (time.perf_counter() - started) * 1000
        return result

    return transact(timed)


RETENTION_KEY = "retention_ms"  # in eoflow_meta: the window of the engine that runs (or ran) last


def note_retention(conn: Conn, retention_ms: int | None) -> None:
    if retention_ms is None:
        conn.execute(Q["delete_meta"], (RETENTION_KEY,))
    else:
        conn.execute(Q["set_meta"], (RETENTION_KEY, str(retention_ms)))


def retention_in_force(conn: Conn) -> int | None:
    row = conn.execute(Q["get_meta"], (RETENTION_KEY,)).fetchone()
    return None if row is None else int(str(row[0]))
