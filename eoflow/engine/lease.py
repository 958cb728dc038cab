"""This engine as an executor of its journal: its lease, and the runs it takes over.

Every third of the lease the heartbeat renews it, on a thread of its own from registration
on (before the start-up takeover). Every CLAIM_POLL seconds the engine expires
the executors whose lease ran out and claims the PENDING runs no live executor owns (theirs,
those handed over by a clean shutdown, those a client started): they resume by replay, as at
start. See journal/executors.py for the rules, and fencing.
"""

from __future__ import annotations

import logging

from eoflow.engine import recovery
from eoflow.engine.background import Background
from eoflow.engine.runtime import Runtime
from eoflow.errors import EngineClosedError, ExecutorFencedError

log = logging.getLogger("eoflow.engine")
CLAIM_POLL = 1.0  # seconds between looks for runs to take over


class Heartbeat(Background):
    """Renews this executor's lease every third of it, on a thread of its own: from just
    after the engine registers, so that neither its start-up takeover nor a later look for
    runs to take over, each of which may wait long on a paused engine's locks, lets the lease
    run out (the other engines would take this live one for dead and fence it)."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__("eoflow-heartbeat")
        self._rt = rt

    def _run(self) -> None:
        while not self._stop.wait(self._rt.config.lease / 3):
            try:
                self._rt.journal.renew_lease(self._rt.clock.now_ms())
            except (ExecutorFencedError, EngineClosedError):
                return  # the engine is stopping
            except Exception as error:  # the journal may come back: the lease says how long
                if not self._stop.is_set():
                    log.warning("engine: could not renew the lease: %s", error)


class LeaseKeeper(Background):
    """Every CLAIM_POLL seconds (a third of the lease at most): expire the executors whose
    lease ran out and take over their runs, and the unowned ones."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__("eoflow-lease")
        self._rt = rt
        self._every = min(CLAIM_POLL, rt.config.lease / 3)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                recovery.take_over(self._rt, if_any=True)  # a read looks first
            except (ExecutorFencedError, EngineClosedError):
                return  # the engine is stopping
            except Exception as error:  # the journal may come back: the lease says how long
                if not self._stop.is_set():
                    log.warning("engine: could not look for runs to take over: %s", error)
