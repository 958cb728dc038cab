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

import functools
import os
import secrets
import socket
from collections.abc import Sequence
from typing import Any

from eoflow.errors import ExecutorFencedError
from eoflow.journal.backend import Conn, Fence
from eoflow.journal.reader import workflow_from_row
from eoflow.journal.records import ALIVE, WorkflowRecord
from eoflow.journal.sql import Q


def new_executor_id() -> str:
    """host:pid:random, unique across restarts of the same process id."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


HISTORY_MS = 86_400_000  # how long a stopped or expired executor stays listed


def register(conn: Conn, executor_id: str, lease_ms: int, now_ms: int,
             app_version: str | None = None) -> None:
    conn.execute(Q["forget_executors"], (now_ms - HISTORY_MS,))
    conn.execute(Q["register_executor"], (executor_id, socket.gethostname(), os.getpid(),
                                          now_ms, now_ms, lease_ms, process_space(),
                                          app_version))


@functools.cache
def process_space() -> str | None:
    """This machine's boot and PID namespace (Linux), or None: processes with the same one see
    the same pids, so one can tell whether another's process still exists."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            return f"{boot.read().strip()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def process_gone(pid: int) -> bool:
    """True when no process `pid` runs in this process space (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, and belongs to someone else
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def dead_neighbours(conn: Conn, executor_id: str) -> list[str]:
    """Live executors of this process space whose process is gone (killed, crashed): their
    runs can be taken now, without waiting for their lease."""
    space = process_space()
    if space is None:
        return []
    return [str(e) for e, pid in conn.execute(Q["neighbours"], (executor_id, space))
            if process_gone(int(pid))]


def fence(executor_id: str, where: str) -> Fence:
    """What every write transaction of `executor_id` must pass: it is still ALIVE."""
    def check(row: Any) -> None:
        if row is None or row[0] != ALIVE:
            raise ExecutorFencedError(where, executor_id,
                                      "missing" if row is None else str(row[0]))

    return Fence(Q["executor_status"], (executor_id,), check)


def renew(conn: Conn, executor_id: str, now_ms: int) -> bool:
    """False once `executor_id` is no longer ALIVE (taken over)."""
    conn.execute(Q["renew_lease"], (now_ms, executor_id))
    return conn.changes() > 0


def claim(conn: Conn, executor_id: str, now_ms: int, others_dead: bool,
          gone: Sequence[str] = ()) -> tuple[list[str], list[WorkflowRecord]]:
    """Expire the executors whose lease ran out (every other one, with `others_dead`) and
    those whose process is `gone`, then take every PENDING run no live executor owns. Returns
    (the executors expired now, the runs claimed now, in the order they were created)."""
    expired = [str(row[0]) for row in
               conn.execute(Q["expire_executors"], (executor_id, now_ms, others_dead))]
    for dead in gone:
        conn.execute(Q["expire_executor"], (dead,))
        if conn.changes() and dead not in expired:
            expired.append(dead)
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
