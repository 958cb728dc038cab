"""The journal's logic over SQL, common to both backends (SQLite and PostgreSQL).

Writes go through one GroupCommitter (one write connection); reads through a second connection
that sees only committed records. `tx` runs @transaction functions in the journal's own database
unless the engine was given a separate application database. sqlite.py and postgres.py open
the connections and own what differs (a file lock, a server's reconnection).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar, cast

from eoflow.errors import ExecutorFencedError
from eoflow.journal import executors, operator, primitive_ops, retention
from eoflow.journal.backend import Backend, Conn
from eoflow.journal.batching import GroupCommitter
from eoflow.journal.primitive_ops import insert_step
from eoflow.journal.reader import Reader
from eoflow.journal.records import Action, KafkaKey, NewWorkflow, Status, StepRecord, WorkflowRecord
from eoflow.journal.retention import PruneReport
from eoflow.journal.sql import Q
from eoflow.journal.txstore import SqlTxStore

if TYPE_CHECKING:
    from eoflow.journal.interface import TxStore

T = TypeVar("T")
Created = tuple[bool, str, Status]  # (created now?, name of the run, its status)


class SqlJournal(Reader):
    """The engine's journal. Reads are Reader's, on the reader connection; writes go through
    `committer`. Close exactly once."""

    # True when this engine alone may run the journal (it holds a lock no other engine can
    # take): every other executor recorded as ALIVE is then dead, and its runs are taken at once.
    exclusive = True

    def __init__(self, path: str, writer: Conn, reader: Conn, backend: Backend) -> None:
        super().__init__(path, reader, backend)
        self.committer = GroupCommitter(writer, path, backend)
        self.tx = SqlTxStore(self.committer, in_journal=True)
        self.executor_id: str | None = None  # once registered
        self.app_version: str | None = None  # the app's, as registered

    # -- executors (executors.py) -------------------------------------------------------------

    def register_executor(self, lease_ms: int, now_ms: int,
                          app_version: str | None = None) -> str:
        """Join as a new executor running `app_version` of the app (the runs it creates record
        it); from now on every write batch is fenced by its lease."""
        executor_id = executors.new_executor_id()

        def register(conn: Conn) -> None:
            executors.register(conn, executor_id, lease_ms, now_ms, app_version)
            # Last: a server's idle timeout applies to this very transaction once set.
            self._settle_session(conn, executor_id, lease_ms)

        self.committer.write(register)
        self.app_version = app_version
        self.executor_id = executor_id
        self.committer.fence = executors.fence(executor_id, self.path)
        return executor_id

    def _settle_session(self, conn: Conn, executor_id: str, lease_ms: int) -> None:
        """Set the writer's session up for `executor_id`, in the batch that registers it (a
        server's journal names the session: postgres.py)."""

    def renew_lease(self, now_ms: int) -> None:
        """Renew this executor's lease (ExecutorFencedError once it was taken over). With
        other engines, in a statement of its own beside the journal's write lock: an engine
        paused while it holds that lock must not stop every other heartbeat (and have the
        live engines taken for dead once it lets go)."""
        executor_id = self._me()
        if self.exclusive:
            renewed = self.committer.write(
                lambda conn: executors.renew(conn, executor_id, now_ms), urgent=True)
        else:
            renewed = self._run(lambda conn: executors.renew(conn, executor_id, now_ms))
        if not renewed:
            error = ExecutorFencedError(self.path, executor_id, "no longer ALIVE")
            self.committer.mark_fenced(error)
            raise error

    def claim_runs(self, now_ms: int, if_any: bool = False
                   ) -> tuple[list[str], list[WorkflowRecord]]:
        """Expire executors past their lease and take every PENDING run no live one owns:
        (executors expired, runs claimed in creation order). `if_any`: look first, with a
        read, and write only if there is something to take."""
        executor_id = self._me()
        gone = [] if self.exclusive else \
            self._run(lambda conn: executors.dead_neighbours(conn, executor_id))
        if if_any and not gone and not self._count("anything_to_claim", (executor_id, now_ms)):
            return [], []
        return self.committer.write(lambda conn: executors.claim(
            conn, executor_id, now_ms, self.exclusive, gone), savepoint=True)

    def claim_run(self, workflow_id: str) -> bool:
        """Own PENDING run `workflow_id` here, unless another live executor does."""
        executor_id = self._me()
        return self.committer.write(lambda conn: executors.claim_one(conn, executor_id,
                                                                     workflow_id))

    def foreign_lane_runs(self, lane: str) -> int:
        """PENDING runs of a partition's lanes that this executor does not own (lanes.py)."""
        return self._count("foreign_lane_runs", (lane, self._me()))

    def pending_lane_order(self, lanes: Sequence[str]) -> list[tuple[str, str, bool]]:
        """(id, lane, this executor's?) of every PENDING run in `lanes`, oldest first."""
        rows = self._all("pending_lane_order", (self._me(), json.dumps(list(lanes))))
        return [(str(w), str(lane), bool(mine)) for w, lane, mine in rows]

    def stop_executor(self, now_ms: int) -> int:
        """A clean shutdown: hand this executor's PENDING runs over; returns how many."""
        executor_id = self._me()
        return self.committer.write(lambda conn: executors.stop(conn, executor_id, now_ms))

    def set_fenced_callback(self, callback: Callable[[ExecutorFencedError], None]) -> None:
        """`callback(error)` once, when this executor finds its runs were taken over."""
        self.committer.on_fenced = callback

    def set_commit_observer(self, observer: Callable[[int, float], None] | None) -> None:
        """`observer(writes, seconds)` after each commit of the writer (for metrics)."""
        self.committer.observer = observer

    def _me(self) -> str:
        assert self.executor_id is not None, "register_executor first"
        return self.executor_id

    def close(self) -> None:
        self.committer.close()
        self.committer.conn.close()
        super().close()

    # -- workflows ----------------------------------------------------------------------------

    def create_workflows(
        self, runs: Sequence[NewWorkflow], now_ms: int, step: StepRecord | None = None
    ) -> list[Created]:
        """Insert the runs that do not exist yet, durably; report each run's name and status.

        `step` (a parent's CHILD step) is recorded in the same transaction."""

        def insert(conn: Conn) -> list[Created]:
            results: list[Created] = []
            if step is not None:
                insert_step(conn, step)
            for run in runs:
                if self._insert_workflow(conn, run, now_ms):
                    results.append((True, run.name, run.status))
                else:
                    row = conn.execute(Q["workflow_name_status"], (run.workflow_id,)).fetchone()
                    assert row is not None, "the insert found this id taken"
                    results.append((False, str(row[0]), Status(row[1])))
            return results

        return self.committer.write(insert, wait=True, savepoint=True, shared=True)

    def _insert_workflow(self, conn: Conn, run: NewWorkflow, now_ms: int) -> bool:
        return primitive_ops.insert_run(conn, self.backend, run, now_ms, self.executor_id,
                                        self.app_version)

    def stored_inputs(self, inputs: str | bytes) -> str | bytes:
        """The inputs as this backend's column holds them."""
        return self.backend.stored_inputs(inputs)

    def finish_workflow(
        self, workflow_id: str, status: Status, output: str | None, error: str | None,
        now_ms: int, on_durable: Callable[[BaseException | None, bool], None] | None = None,
        urgent: bool = False,
    ) -> None:
        """Record a PENDING run's outcome without waiting; `on_durable(error, applied)` follows
        the commit, `applied` False if the run was no longer PENDING (e.g. cancelled)."""
        applied = [False]

        def finish(conn: Conn) -> None:
            conn.execute(Q["finish_workflow"], (status.value, output, error, now_ms, workflow_id))
            applied[0] = bool(conn.changes())

        def durable(failure: BaseException | None) -> None:
            if on_durable is not None:
                on_durable(failure, applied[0])

        self.committer.write(finish, wait=False, on_durable=durable, urgent=urgent,
                             shared=True)

    # -- operator actions: the same code as the CLI's (operator.py), on the writer ------------

    def cancel_workflow(self, workflow_id: str, now_ms: int) -> list[str]:
        """Mark a live run and its live descendants CANCELLED; returns their ids."""
        return self.committer.write(
            lambda conn: operator.cancel(conn, workflow_id, now_ms, notify=False), savepoint=True)

    def resume_workflow(self, workflow_id: str, now_ms: int) -> WorkflowRecord:
        """Make a cancelled, parked or queued run PENDING again; returns it as it now is."""
        return self.committer.write(
            lambda conn: operator.resume(conn, workflow_id, now_ms, notify=False),
            savepoint=True)

    def fork_workflow(self, workflow_id: str, from_step: int, new_id: str,
                      now_ms: int) -> WorkflowRecord:
        """Create run `new_id` reusing `workflow_id`'s recorded steps before `from_step`."""
        return self.committer.write(
            lambda conn: operator.fork(conn, workflow_id, from_step, new_id, now_ms,
                                       notify=False), savepoint=True)

    def note_recoveries(self, runs: Sequence[tuple[str, int]], now_ms: int) -> list[int]:
        """For each (workflow id, steps recorded): count one more recovery, restarting the count
        when the run recorded new steps since its last recovery. Returns the counts."""

        def note(conn: Conn) -> list[int]:
            counts = []
            for wid, steps in runs:
                row = conn.execute(Q["note_recovery"], (steps, now_ms, wid)).fetchone()
                assert row is not None, "the run is PENDING, so the update returned it"
                counts.append(int(row[0]))
            return counts

        return self.committer.write(note, savepoint=True)

    def park_workflow(self, workflow_id: str, now_ms: int) -> None:
        self.committer.write(lambda conn: conn.execute(Q["park_workflow"], (now_ms, workflow_id)))

    # -- steps --------------------------------------------------------------------------------

    def record_step(self, record: StepRecord) -> None:
        """Record a step's outcome; returns once it is durable."""
        self.committer.write(lambda conn: insert_step(conn, record), shared=True)

    # -- messages, events, sleeps, queues: the writes of primitive_ops.py ---------------------

    def send_message(self, destination: str, topic: str, message: str, now_ms: int,
                     step: StepRecord | None = None) -> None:
        """Queue `message` for `destination` (which must exist), with the sender's step."""
        self.committer.write(lambda conn: primitive_ops.send_message(
            conn, destination, topic, message, now_ms, step), savepoint=True)

    def take_message(self, destination: str, topic: str, step: StepRecord) -> str | None:
        """Consume the oldest message for (destination, topic) and record `step` with it as
        output, atomically; None (and nothing recorded) when there is none."""
        return self.committer.write(lambda conn: primitive_ops.take_message(
            conn, destination, topic, step), savepoint=True)

    def set_event(self, workflow_id: str, key: str, value: str, now_ms: int,
                  step: StepRecord | None) -> None:
        """Publish an event, with the step that did it (none from inside a step)."""
        self.committer.write(lambda conn: primitive_ops.set_event(
            conn, workflow_id, key, value, now_ms, step), savepoint=True)

    def set_not_before(self, workflow_id: str, not_before_ms: int | None) -> None:
        """A hint for recovery: the run sleeps until then (its SLEEP step is the truth)."""
        self.committer.write(lambda conn: primitive_ops.set_not_before(
            conn, workflow_id, not_before_ms), wait=False)

    def dequeue(self, queue: str, now_ms: int, by_priority: bool, limit: int,
                concurrency: int | None = None, rate: tuple[int, int] | None = None,
                ) -> list[tuple[str, str, int]]:
        """Move up to `limit` ready runs of `queue` from ENQUEUED to PENDING, in queue order,
        keeping at most `concurrency` PENDING and `rate` = (n, period_ms) dequeued per period
        (counted in the same transaction: the limits hold across engines); returns (workflow
        id, name, inputs) of each, durably."""
        return self.committer.write(lambda conn: primitive_ops.dequeue(
            conn, queue, now_ms, by_priority, limit, concurrency, self.executor_id, rate),
            savepoint=True)

    # -- Kafka bookkeeping --------------------------------------------------------------------

    def note_offsets(self, keys: Sequence[KafkaKey], now_ms: int) -> None:
        """Remember the highest offset recorded per partition, and count the messages above
        the one noted before (for `eoflow status`). A partition's offsets only grow, so a
        redelivered message is never counted twice, whether or not it was recorded first."""
        offsets: dict[tuple[str, str, int], list[int]] = {}
        for k in keys:
            offsets.setdefault((k.group_id, k.topic, k.partition), []).append(k.offset)

        def note(conn: Conn) -> None:
            for (group, topic, partition), seen in offsets.items():
                row = conn.execute(Q["kafka_offset_of"], (group, topic, partition)).fetchone()
                new = len({o for o in seen if row is None or o > row[0]})
                conn.execute(Q["note_kafka_offset"],
                             (group, topic, partition, max(seen), new, now_ms))

        # Shared: two engines noting one partition at once (a rebalance) may miscount its
        # messages for `eoflow status`; the offset itself only grows (an upsert).
        self.committer.write(note, wait=False, shared=True)

    def kafka_topic(self, group_id: str, topic: str) -> tuple[str | None, int]:
        """(the topic's recorded id, or None; the incarnation its keys are under)."""
        rows = cast(list[tuple[str | None, int]], self._all("get_kafka_topic", (group_id, topic)))
        return (None, 0) if not rows else (rows[0][0], int(rows[0][1]))

    def set_kafka_topic_id(self, group_id: str, topic: str, topic_id: str,
                           now_ms: int) -> None:
        self.committer.write(lambda conn: conn.execute(
            Q["set_kafka_topic_id"], (group_id, topic, topic_id, now_ms)))

    def quarantine(
        self, key: KafkaKey, handler: str, message_key: bytes | None, value: bytes | None,
        headers: str, timestamp_ms: int | None, error: str, attempts: int, now_ms: int,
        raw: bytes | None = None,
    ) -> None:
        """Park a poison message with its payload and error, durably (`raw`: the bytes of a
        record the client could not decode, whose fields are then unknown)."""
        self.committer.write(lambda conn: conn.execute(Q["insert_quarantine"], (
            key.key, key.group_id, key.topic, key.partition, key.offset, handler, message_key,
            value, headers, timestamp_ms, error, attempts, now_ms, raw,
        )))

    def set_quarantine_status(
        self, key: str, status: str, error: str | None = None, attempts: int = 0
    ) -> None:
        self.committer.write(
            lambda conn: conn.execute(Q["set_quarantine_status"], (status, error, attempts, key))
        )

    # -- retention ----------------------------------------------------------------------------

    def prune(self, cutoff_ms: int, txstore: TxStore) -> Iterator[PruneReport]:
        """Forget what retention allows (retention.py), one short write per batch, on this
        journal's writer; `txstore` is where @transaction records and Kafka keys live."""
        def journal(work: Callable[[Conn], T]) -> T:
            return self.committer.write(work, wait=True, savepoint=True)

        app_db = None
        if isinstance(txstore, SqlTxStore) and txstore.committer is not self.committer:
            app_db = txstore.write
        return retention.prune(journal, app_db, cutoff_ms)

    def set_retention(self, retention_ms: int | None) -> None:
        """Note the retention in force, for `eoflow journal info` and `eoflow status`."""
        self.committer.write(lambda conn: retention.note_retention(conn, retention_ms))

    # -- operator requests (from the CLI while an engine runs) --------------------------------

    def take_requests(self) -> list[tuple[int, str, Action]]:
        """Remove and return the requests the CLI left: (id, workflow id or key, action)."""
        return self.committer.write(
            lambda conn: [(int(row[0]), str(row[1]), Action(row[2]))
                          for row in conn.execute(Q["take_requests"], (self.executor_id,))]
        )
