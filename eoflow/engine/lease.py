"""This engine as an executor of its journal: its lease, and the runs it takes over.

Every third of the lease the heartbeat renews it. Every CLAIM_POLL seconds the engine expires
the executors whose lease ran out and claims the PENDING runs no live executor owns (theirs,
those handed over by a clean shutdown, those a client started): they resume by replay, as at
start. See journal/executors.py for the rules, and fencing.
"""

from __future__ import annotations

import logging
import time

from eoflow.engine import recovery
from eoflow.engine.background import Background
from eoflow.engine.runtime import Runtime
from eoflow.errors import EngineClosedError, ExecutorFencedError

log = logging.getLogger("eoflow.engine")
CLAIM_POLL = 1.0  # seconds between looks for runs to take over


class LeaseKeeper(Background):
    def __init__(self, rt: Runtime, claim: bool) -> None:
        super().__init__("eoflow-lease")
        self._rt = rt
        # Take over others' runs, and runs a Client started (not with recover=False). A read
        # looks first: an engine with nothing to take writes nothing.
        self._claim = claim
        self._every = min(CLAIM_POLL, rt.config.lease / 3)
        self._renew_every = rt.config.lease / 3

    def _run(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self._every):
            try:
                if time.monotonic() - renewed >= self._renew_every * 0.9:
                    self._rt.journal.renew_lease(self._rt.clock.now_ms())
                    renewed = time.monotonic()
                if self._claim:
                    recovery.take_over(self._rt, if_any=True)
            except (ExecutorFencedError, EngineClosedError):
                return  # the engine is stopping
            except Exception as error:  # the journal may come back: the lease says how long
                if not self._stop.is_set():
                    log.warning("engine: could not renew the lease or look for runs to take "
                                "over: %s", error)
