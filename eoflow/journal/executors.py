"""Executors: the engines that run one journal's work, and which of them owns each run.

Each engine registers as an executor (an id made of its host, its pid and a random suffix)
with a lease that its heartbeat renews. A PENDING run belongs to the executor that started it,
dequeued it or took it over (eoflow_workflows.executor_id). An executor that finds another's
lease run out marks it EXPIRED and takes its runs over; one that shuts down cleanly is STOPPED
and leaves its runs unowned, for any executor to claim at once.

Fencing: every write transaction of an executor first reads its own row, under the journal's
write lock, and goes on only if it still says ALIVE. A takeover happens under that same lock,
so an executor that was paused past its lease (SIGSTOP, a long GC, a VM migration) and wakes
up finds itself EXPIRED at its next write: the write is refused (ExecutorFencedError) and the
engine stops. Whatever it committed before the takeover was its own to commit.
"""

from __future__ import annotations

import os
import secrets
import socket

from eoflow.errors import ExecutorFencedError
from eoflow.journal.backend import Conn
from eoflow.journal.reader import workflow_from_row
from eoflow.journal.records import ALIVE, WorkflowRecord
from eoflow.journal.sql import Q


def new_executor_id() -> str:
    """host:pid:random, unique across restarts of the same process id."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


HISTORY_MS = 86_400_000  # how long a stopped or expired executor stays listed


def register(conn: Conn, executor_id: str, lease_ms: int, now_ms: int) -> None:
    conn.execute(Q["forget_executors"], (now_ms - HISTORY_MS,))
    conn.execute(Q["register_executor"], (executor_id, socket.gethostname(), os.getpid(),
                                          now_ms, now_ms, lease_ms))


def fence(conn: Conn, executor_id: str, where: str) -> None:
    """Refuse the write transaction this runs in unless `executor_id` is still ALIVE."""
    row = conn.execute(Q["executor_status"], (executor_id,)).fetchone()
    if row is None or row[0] != ALIVE:
        raise ExecutorFencedError(where, executor_id, "missing" if row is None else str(row[0]))


def renew(conn: Conn, executor_id: str, now_ms: int) -> None:
    conn.execute(Q["renew_lease"], (now_ms, executor_id))


def claim(conn: Conn, executor_id: str, now_ms: int, others_dead: bool
          ) -> tuple[list[str], list[WorkflowRecord]]:
    """Expire the executors whose lease ran out (every other one, with `others_dead`), then
    take every PENDING run no live executor owns. Returns (the executors expired now, the runs
    claimed now, in the order they were created)."""
    expired = [str(row[0]) for row in
               conn.execute(Q["expire_executors"], (executor_id, now_ms, others_dead))]
    claimed = {str(row[0]) for row in conn.execute(Q["claim_runs"], (executor_id,))}
    if not claimed:
        return expired, []
    runs = [workflow_from_row(row) for row in conn.execute(Q["owned_runs"], (executor_id,))]
    return expired, [run for run in runs if run.workflow_id in claimed]


def claim_one(conn: Conn, executor_id: str, workflow_id: str) -> bool:
    """Take PENDING run `workflow_id` unless another live executor owns it (it runs it)."""
    conn.execute(Q["claim_run"], (executor_id, workflow_id))
    return conn.changes() > 0


def stop(conn: Conn, executor_id: str, now_ms: int) -> int:
    """A clean shutdown: STOPPED, its PENDING runs unowned. Returns how many it handed over."""
    conn.execute(Q["stop_executor"], (now_ms, executor_id))
    conn.execute(Q["hand_over_runs"], (executor_id,))
    return conn.changes()
