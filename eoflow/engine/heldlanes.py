"""Runs taken over that must not overtake older runs of their lane held elsewhere.

A lane (a Kafka partition's, or a key's within it) runs its runs in the order they were
created, across engines. A takeover can claim runs of a lane while older runs of the same
lane are PENDING under another executor: a live one still running them (the partition's
previous consumer), or one whose lease has not run out yet. The runs it claimed then wait
here, unqueued, so that no worker thread waits with them.

A lane's held runs are queued, in creation order, as soon as they are older than every run
of the lane another executor holds: at the takeover itself, or at a re-check every
`POLL` seconds (a timer, then a short task). A later takeover that claims one of those older
runs (its owner died meanwhile) merges it in, in order. Kafka's lane gate (kafka/lanes.py)
counts held runs as not yet queued: new runs of the partition wait behind them.

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
        self._armed: set[str] = set()  # lanes with a re-check on its way

    def count(self, lane: str) -> int:
        """Runs held in `lane` or in its keys' lanes (`lane:key:...`), under the lanes lock."""
        prefix = f"{lane}:key:"
        return sum(len(runs) for name, runs in self._lanes.items()
                   if name == lane or name.startswith(prefix))

    def settle(self, claimed: Sequence[tuple[str, str, Queue]]) -> None:
        """Runs just claimed, (id, lane, how to queue it): queue those that may run now, in
        their lane's order with the runs already held there; hold the rest."""
        if not claimed:
            return
        for workflow_id, lane, queue in claimed:
            self._lanes.setdefault(lane, {})[workflow_id] = queue
        lanes = sorted({lane for _, lane, _ in claimed})
        try:
            order = self._journal.pending_lane_order()
        except JournalError as error:  # claimed, so ours: they run once the re-check can read
            log.warning("engine: cannot read the order of the runs taken over (%s); they wait "
                        "until it can be read", error)
            for lane in lanes:
                self._arm(lane)
            return
        for lane in lanes:
            self._release(lane, [row for row in order if row[1] == lane])

    def _release(self, lane: str, order: Order) -> None:
        """Queue the held runs of `lane` older than its oldest run held elsewhere, oldest
        first; keep the others (and look again later)."""
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
        self._arm(lane)

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

    def _arm(self, lane: str) -> None:
        if lane in self._armed:
            return
        self._armed.add(lane)
        self._timers.at(self._clock.now_ms() + int(POLL * 1000),
                        lambda: self._pool.submit(lambda: self._recheck(lane)))

    def _recheck(self, lane: str) -> None:
        with self._lock:
            self._armed.discard(lane)
            if self._closed() or lane not in self._lanes:
                return  # closing: the runs stay PENDING for the next engine
            try:
                order = self._journal.pending_lane_order(lane)
            except JournalError as error:
                now = time.monotonic()
                if now - self._warned.get(lane, 0.0) >= WARN_EVERY:
                    self._warned[lane] = now
                    log.warning("engine: lane %s: cannot read its runs' order (%s); its %d "
                                "run(s) taken over wait", lane, error, len(self._lanes[lane]))
                self._arm(lane)
                return
            self._release(lane, order)
