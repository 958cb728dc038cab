"""Runs taken over that must not overtake older runs of their lane held elsewhere.

A lane (a Kafka partition's, or a key's within it) runs its runs in the order they were
created, across engines. A takeover can claim runs of a lane while older runs of the same
lane are PENDING under another executor: a live one still running them (the partition's
previous consumer), or one whose lease has not run out yet. The runs it claimed then wait
here, unqueued, so that no worker thread waits with them.

A lane's held runs are queued, in creation order, as soon as they are older than every run
of the lane another executor holds: at the takeover itself, or at a re-check every `POLL`
seconds (a timer, then a short task, one read for all held lanes). A later takeover that
claims one of those older runs (its owner died meanwhile) merges it in, in order. Kafka's
lane gate (kafka/lanes.py) counts held runs as not yet queued: new runs of the partition wait
behind them. An operator's resume of a held run (or a start of it again) leaves it held.

Everything here runs under `Runtime.lanes_lock`, which a takeover holds from its claim until
it has queued (or held) what it claimed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from eoflow.engine.clock import Clock
from eoflow.engine.pool import WorkerPool
from eoflow.engine.timers import Timers
from eoflow.errors import JournalError
from eoflow.journal.interface import Journal

log = logging.getLogger("eoflow.engine")
Queue = Callable[[], None]  # puts one held run on its lane
Order = Sequence[tuple[str, str, bool]]  # PENDING runs with a lane: (id, lane, ours?), oldest first
POLL = 0.2  # seconds between looks at a lane whose runs are held
WARN_EVERY = 60.0  # seconds between warnings about a lane that stays held


class HeldLanes:
    def __init__(self, journal: Journal, pool: WorkerPool, timers: Timers, clock: Clock,
                 lock: threading.Lock, closed: Callable[[], bool]) -> None:
        self._journal, self._pool, self._timers, self._clock = journal, pool, timers, clock
        self._lock = lock  # the runtime's lanes lock
        self._closed = closed
        self._lanes: dict[str, dict[str, Queue]] = {}  # lane: {run id: how to queue it}
        self._warned: dict[str, float] = {}  # lane: when it was last reported (monotonic)
        self._armed = False  # a re-check is on its way
        self._read_warned = 0.0  # when a failed read of the order was last reported

    def count(self, lane: str) -> int:
        """Runs held in `lane` or in its keys' lanes (`lane:key:...`), under the lanes lock."""
        prefix = f"{lane}:key:"
        return sum(len(runs) for name, runs in self._lanes.items()
                   if name == lane or name.startswith(prefix))

    def requeue(self, workflow_id: str, queue_in: Callable[[str], Queue]) -> bool:
        """An operator resumed (or a caller started again) run `workflow_id`: if it is held
        here, it stays held, and `queue_in(its lane)` queues it when its turn comes. False if
        it is not held (the caller queues it)."""
        with self._lock:
            for lane, held in self._lanes.items():
                if workflow_id in held:
                    held[workflow_id] = queue_in(lane)
                    return True
            return False

    def settle(self, claimed: Sequence[tuple[str, str, Queue]]) -> None:
        """Runs just claimed, (id, lane, how to queue it), under the lanes lock: queue those
        that may run now, in their lane's order with the runs already held there; hold the
        rest."""
        if not claimed:
            return
        for workflow_id, lane, queue in claimed:
            self._lanes.setdefault(lane, {})[workflow_id] = queue
        self._look(sorted({lane for _, lane, _ in claimed}))

    def _look(self, lanes: Sequence[str]) -> None:
        """Release what may run now in `lanes`, from one read of every lane's order; look
        again later while anything is held."""
        try:
            order = self._journal.pending_lane_order(lanes)
        except JournalError as error:  # claimed, so ours: they run once it can be read
            now = time.monotonic()
            if now - self._read_warned >= WARN_EVERY:
                self._read_warned = now
                log.warning("engine: cannot read the order of the runs taken over (%s); "
                            "they wait until it can be read", error)
        else:
            rows: dict[str, list[tuple[str, str, bool]]] = {lane: [] for lane in lanes}
            for row in order:
                if row[1] in rows:
                    rows[row[1]].append(row)
            for lane in lanes:
                self._release(lane, rows[lane])
        if self._lanes and not self._armed:
            self._armed = True
            self._timers.at(self._clock.now_ms() + int(POLL * 1000),
                            lambda: self._pool.submit(self._recheck))

    def _release(self, lane: str, order: Order) -> None:
        """Queue the held runs of `lane` older than its oldest run held elsewhere, oldest
        first; keep the others."""
        held = self._lanes[lane]
        position = {workflow_id: n for n, (workflow_id, _, _) in enumerate(order)}
        foreign = next((n for n, (_, _, ours) in enumerate(order) if not ours), len(order))
        # A held run that is no longer PENDING (cancelled meanwhile) goes first: it only
        # reports its outcome.
        ready = sorted((w for w in held if position.get(w, -1) < foreign),
                       key=lambda w: position.get(w, -1))
        for workflow_id in ready:
            held.pop(workflow_id)()
        if not held:
            del self._lanes[lane]
            self._warned.pop(lane, None)
            return
        self._tell(lane, len(held), sum(1 for _, _, ours in order if not ours))

    def _tell(self, lane: str, held: int, older: int) -> None:
        now = time.monotonic()
        last = self._warned.get(lane)
        if last is None:
            self._warned[lane] = now
            log.info("engine: %d run(s) of lane %s, taken over, wait for an older run of the "
                     "lane that another executor holds, to keep their order", held, lane)
        elif now - last >= WARN_EVERY:
            self._warned[lane] = now
            log.warning("engine: %d run(s) of lane %s, taken over, still wait for %d older "
                        "run(s) that another executor holds (a run of another app version "
                        "waits for an engine of that version)", held, lane, older)

    def _recheck(self) -> None:
        """Every POLL seconds while runs are held: one read for all their lanes (a takeover
        behind a busy consumer may hold many keys' lanes)."""
        with self._lock:
            self._armed = False
            if self._closed():
                return  # closing: the runs stay PENDING for the next engine
            self._look(sorted(self._lanes))
