"""Runs held in this process: queued, running, or just finished, and who executes each.

A run is *claimed* by exactly one thread (a pool worker, a direct caller, or a parent workflow
running its child inline); any other thread that wants its result waits on the same ActiveRun.
Claiming happens when execution begins, never at submission, so a parent can always run a child
that is still queued instead of waiting for a worker that may never come.
"""

from __future__ import annotations

import enum
import threading
from typing import Any, Protocol

from eoflow.journal.records import Status
from eoflow.latch import Latch


class StopReason(str, enum.Enum):
    """Why a running workflow is asked to stop at its next step boundary."""

    CANCELLED = "cancelled"  # an operator cancelled it: it ends CANCELLED
    TIMED_OUT = "timed out"  # its deadline passed: it ends CANCELLED, recorded as timed out
    SHUTDOWN = "shutdown"  # the engine is closing: it stays PENDING for the next start
    JOURNAL_FAILURE = "journal failure"  # a record could not be written: it stays PENDING


class Stoppable(Protocol):
    """What a running run's context offers to other threads (see context.RunContext)."""

    def stop(self, reason: StopReason) -> None: ...


class ActiveRun:
    """A run known to this process: queued, running, or just finished."""

    __slots__ = ("workflow_id", "claimed", "context", "done", "status", "value", "error", "call",
                 "journal_failures")

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        # The caller's (args, kwargs) of a run just created here: its first execution uses them
        # instead of decoding the journaled inputs (which replay uses, and which equal them).
        self.call: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.claimed = False
        self.context: Stoppable | None = None
        self.done = Latch()
        self.status: Status = Status.PENDING
        self.value: Any = None
        self.error: BaseException | None = None
        self.journal_failures = 0  # journal writes of this run that failed in a row

    def resolve(self, status: Status, value: Any, error: BaseException | None) -> None:
        self.status, self.value, self.error = status, value, error
        self.done.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class ActiveRuns:
    """The runs this process holds, by workflow id; claims are taken under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, ActiveRun] = {}
        # Held while an operator action (resume) or a run stopping for a cancel reads the
        # journal and decides: so a resume racing the stop of a cancelled run is never lost.
        self.operator_lock = threading.RLock()

    def get(self, workflow_id: str) -> ActiveRun | None:
        with self._lock:
            return self._active.get(workflow_id)

    def track(self, workflow_id: str) -> ActiveRun:
        with self._lock:
            run = self._active.get(workflow_id)
            if run is None:
                run = self._active[workflow_id] = ActiveRun(workflow_id)
            return run

    def claim(self, run: ActiveRun) -> bool:
        with self._lock:
            if run.claimed or run.done.is_set():
                return False
            run.claimed = True
            return True

    def unclaim(self, run: ActiveRun) -> None:
        with self._lock:
            run.claimed = False

    def forget(self, run: ActiveRun) -> None:
        with self._lock:
            if self._active.get(run.workflow_id) is run:
                del self._active[run.workflow_id]

    def stop_all(self, reason: StopReason, unstarted: BaseException) -> None:
        """Ask every running workflow to stop at its next step boundary; release the waiters
        of runs that have not started with `unstarted` (they stay PENDING in the journal)."""
        with self._lock:
            runs = list(self._active.values())
        for run in runs:
            if run.context is not None:
                run.context.stop(reason)
            elif self.claim(run):
                self.forget(run)
                run.resolve(Status.PENDING, None, unstarted)
