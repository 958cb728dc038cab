"""Running @transaction functions exactly once, in the database that holds the application's data.

A transaction's own outcome record is written in the same SQLite transaction as the user's SQL,
so either both are durable or neither is. By default that database is the journal itself (the
outcome is the step record); with an `app_db`, it is `eoflow_tx_outputs` in that database and the
engine copies the outcome into the journal afterwards.

Kafka messages handled by a transaction are applied in batches: one SQLite transaction for a whole
polled batch, one savepoint per message, so a message that raises rolls back alone. Each message's
idempotency key is inserted in its own savepoint, before its work: a key already present means the
message was applied before, and its work is skipped.
"""

from __future__ import annotations

import enum
import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from eoflow.journal.backend import Conn
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.codec import encode_error
from eoflow.journal.primitive_ops import insert_step
from eoflow.journal.records import StepKind, StepRecord
from eoflow.journal.savepoint import in_savepoint
from eoflow.journal.sql import Q

T = TypeVar("T")
KEYS_PER_INSERT = 200  # Kafka keys per INSERT statement (3 parameters each)


@functools.lru_cache(maxsize=8)
def _insert_keys(count: int) -> str:
    """`count` Kafka keys in one INSERT that returns the keys it inserted (the new ones)."""
    rows = ", ".join(["(?, ?, ?)"] * count)
    return (f"INSERT INTO eoflow_kafka_keys (key, handler, applied_ms) VALUES {rows} "
            "ON CONFLICT (key) DO NOTHING RETURNING key")

Work = Callable[[Any], str]  # runs the user's SQL on the driver's connection; output as JSON


@dataclass(frozen=True)
class TxOutcome:
    output: str | None
    error: str | None
    fresh: bool  # False when an earlier attempt had already committed this transaction


class Applied(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    SKIPPED = "skipped"  # not tried: an earlier item of its lane failed, or time ran out


@dataclass(frozen=True)
class KeyedResult:
    outcome: Applied
    error: Exception | None = None


class SqlTxStore:
    """Exactly-once transactions on one database (SQLite or PostgreSQL), through its group
    committer. User code gets the driver's own connection (Backend.user_connection)."""

    def __init__(self, committer: GroupCommitter, *, in_journal: bool) -> None:
        self.committer = committer
        self.path = committer.path
        self.in_journal = in_journal
        self._backend = committer.backend
        self._user = committer.backend.user_connection

    def run_transaction(
        self, workflow_id: str, step: int, name: str, work: Work, started_ms: int,
        clock_ms: Callable[[], int], carried: StepRecord | None = None,
    ) -> TxOutcome:
        """Run `work` and record its outcome atomically; return the winner's outcome on a race.
        `carried`, the record of the workflow's step just before (only when this store is the
        journal), is written in the same commit."""
        assert carried is None or self.in_journal, "a step record belongs in the journal"

        def attempt(conn: Conn) -> TxOutcome:
            if carried is not None:
                insert_step(conn, carried)
            found = self._recorded(conn, workflow_id, step)
            if found is not None:
                return found
            try:
                output, error = in_savepoint(
                    conn, self._backend, "eoflow_tx", lambda: work(self._user(conn)), name), None
            except Exception as failure:
                if conn.getautocommit():  # SQLite ended the transaction (disk full, I/O error)
                    raise
                output, error = None, encode_error(failure)
            self._record(conn, workflow_id, step, name, output, error, started_ms, clock_ms())
            return TxOutcome(output, error, fresh=True)

        return self.committer.turn(attempt, savepoint=False, shared=True)

    def write(self, work: Callable[[Conn], T]) -> T:
        """`work(conn)` in the store's next write transaction (bookkeeping such as retention)."""
        return self.committer.write(work, wait=True, savepoint=True)

    def name_session(self, executor_id: str) -> None:
        """An application database's writer, named after this engine's executor (a journal
        names its own): see end_sessions."""
        if not self.in_journal:
            self.committer.write(lambda conn: self._backend.name_session(conn, executor_id))

    def end_sessions(self, executor_ids: Sequence[str]) -> int:
        """End the sessions of an application database that `executor_ids`, just taken over,
        hold inside a transaction (an engine paused there would keep its locks until it
        wakes); how many. Its own connection: this store's writer may be waiting on them."""
        if self.in_journal or not executor_ids:
            return 0
        return self._backend.end_sessions(self.committer.conn, executor_ids)

    def run_plain(self, work: Callable[[Any], T]) -> T:
        """`work(conn)` in a transaction of its own, recording nothing (a @transaction called
        outside any workflow)."""
        return self.committer.turn(lambda conn: work(self._user(conn)), savepoint=True,
                                   shared=True)

    def apply_keyed(
        self, items: Sequence[tuple[str, str, Callable[[Any], object], str]],
        now_ms: int, budget: float | None = None, at_once: bool = True,
    ) -> list[KeyedResult]:
        """Apply (key, handler name, work, lane) items in one durable transaction, in order,
        skipping known keys. Once an item fails, later items of its lane are SKIPPED, so that a
        lane (a partition) is never applied out of order. With a `budget` (seconds), the items
        left once it is spent are SKIPPED too (at least one item is tried): slow handlers then
        hold the single writer for about that long, and other writers get their turn.

        With `at_once`, the batch is first tried all at once; if an item fails, everything is
        rolled back and the batch is applied item by item: the works before the failed one
        then run twice (their SQL takes effect once, as always). Retries of failed items should
        pass at_once=False."""

        def deadline() -> float | None:
            return None if budget is None else time.monotonic() + budget

        def batch(conn: Conn) -> list[KeyedResult]:
            # One item (a retry of a failed one, often) gains nothing from the fast path.
            fast = self._all_at_once(conn, items, now_ms, deadline()) \
                if at_once and len(items) > 1 else None
            # After a failed fast path, the fallback gets a whole budget of its own: with what
            # was left of the first, it could apply less than the fast path had reached, and a
            # batch retried that way would crawl.
            return fast if fast is not None else \
                self._one_by_one(conn, items, now_ms, deadline())

        return self.committer.turn(batch, savepoint=False, shared=True)

    def _all_at_once(
        self, conn: Conn, items: Sequence[tuple[str, str, Callable[[Any], object], str]],
        now_ms: int, until: float | None,
    ) -> list[KeyedResult] | None:
        """The usual case, in few statements: every key inserted at once (the new ones come
        back), then each new item's work, under one savepoint, sent together where the
        database allows (Backend.pipelined: PostgreSQL's pipeline mode, where an error then
        surfaces at the end). None, with nothing applied, if an item fails: `_one_by_one` then
        sorts the batch out, item by item. (On PostgreSQL a savepoint per item costs two round
        trips to the server, and each handler's statement one more.)"""
        def attempt() -> list[KeyedResult]:
            fresh: set[str] = set()
            for start in range(0, len(items), KEYS_PER_INSERT):
                chunk = items[start:start + KEYS_PER_INSERT]
                fresh.update(str(row[0]) for row in conn.execute(
                    _insert_keys(len(chunk)),
                    [v for key, handler, _, _ in chunk for v in (key, handler, now_ms)]))
            results: list[KeyedResult] = []
            with self._backend.pipelined(conn) as between:
                self._each_new(conn, items, fresh, results, until, between)
            return results

        try:
            return in_savepoint(conn, self._backend, "eoflow_batch", attempt, "a Kafka handler")
        except Exception:
            if conn.getautocommit():  # the whole batch is lost: nothing is applied
                raise
            return None

    def _each_new(
        self, conn: Conn, items: Sequence[tuple[str, str, Callable[[Any], object], str]],
        fresh: set[str], results: list[KeyedResult], until: float | None,
        between: Callable[[], None],
    ) -> None:
        """Each new item's work, in order, into `results` (the fast path's loop), with
        `between()` after each (Backend.pipelined)."""
        for key, _, work, _ in items:
            if until is not None and results and time.monotonic() > until:
                # Time is up: the rest is SKIPPED (tried again by the caller), and the keys
                # just inserted for it go (nothing of it was applied).
                unapplied = [k for k, _, _, _ in items[len(results):] if k in fresh]
                if unapplied:
                    conn.execute(Q["forget_new_keys"], (json.dumps(unapplied),))
                results.extend(KeyedResult(Applied.SKIPPED)
                               for _ in range(len(items) - len(results)))
                return
            if key not in fresh:
                results.append(KeyedResult(Applied.DUPLICATE))
                continue
            fresh.discard(key)  # the same key twice in a batch applies once
            work(self._user(conn))
            between()
            results.append(KeyedResult(Applied.APPLIED))

    def _one_by_one(
        self, conn: Conn, items: Sequence[tuple[str, str, Callable[[Any], object], str]],
        now_ms: int, until: float | None,
    ) -> list[KeyedResult]:
        """Each item in a savepoint of its own: a failed item rolls back alone, and the later
        items of its lane are SKIPPED."""
        results: list[KeyedResult] = []
        failed_lanes: set[str] = set()
        for key, handler, work, lane in items:
            if lane in failed_lanes or (until is not None and results
                                        and time.monotonic() > until):
                results.append(KeyedResult(Applied.SKIPPED))
                continue

            def apply(key: str = key, handler: str = handler,
                      work: Callable[[Any], object] = work) -> Applied:
                conn.execute(Q["insert_kafka_key"], (key, handler, now_ms))
                if conn.changes() == 0:
                    return Applied.DUPLICATE
                work(self._user(conn))
                return Applied.APPLIED

            try:
                results.append(KeyedResult(
                    in_savepoint(conn, self._backend, "eoflow_msg", apply, handler)))
            except Exception as failure:
                if conn.getautocommit():  # the whole batch is lost: nothing is applied
                    raise
                results.append(KeyedResult(Applied.FAILED, failure))
                failed_lanes.add(lane)
        return results

    # -- where the outcome lives --------------------------------------------------------------

    def _recorded(self, conn: Conn, workflow_id: str, step: int) -> TxOutcome | None:
        if self.in_journal:
            row = conn.execute(Q["get_step"], (workflow_id, step)).fetchone()
            return None if row is None else TxOutcome(row[4], row[5], fresh=False)
        row = conn.execute(Q["get_tx_output"], (workflow_id, step)).fetchone()
        return None if row is None else TxOutcome(row[1], row[2], fresh=False)

    def _record(
        self, conn: Conn, workflow_id: str, step: int, name: str, output: str | None,
        error: str | None, started_ms: int, ended_ms: int,
    ) -> None:
        if self.in_journal:
            conn.execute(
                Q["insert_step"],
                (workflow_id, step, name, StepKind.TRANSACTION.value, output, error, 1,
                 started_ms, ended_ms),
            )
        else:
            conn.execute(Q["insert_tx_output"], (workflow_id, step, name, output, error, ended_ms))
