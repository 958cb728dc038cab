"""An engine's lease is renewed from its registration on, on a thread of its own: a start-up
takeover that waits longer than the lease (on a paused engine's locks, on PostgreSQL) must not
let the others take this live engine for dead. The many-engines chaos test once saw an engine
expired by another one second after its start, its takeover having waited 8 s."""

from __future__ import annotations

import time
from itertools import pairwise
from typing import Any

import pytest

from eoflow import Engine
from eoflow.engine import recovery
from eoflow.engine.runtime import Runtime
from tests.portable import journal_sql

LEASE = 0.9  # seconds


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_lease_is_renewed_while_the_start_up_takeover_waits(
        journal_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    beats: list[int] = []
    real = recovery.recover

    def slow(rt: Runtime) -> Any:  # waits three leases, as on a lock
        for _ in range(30):
            time.sleep(LEASE / 10)
            beats.extend(int(b) for (b,) in journal_sql(
                journal_path, "SELECT heartbeat_ms FROM eoflow_executors"))
        return real(rt)

    monkeypatch.setattr(recovery, "recover", slow)
    with Engine(journal=journal_path, lease=LEASE) as engine:
        status = journal_sql(journal_path, "SELECT status FROM eoflow_executors")
        assert engine.fenced is None
    assert status == [("ALIVE",)]
    # Renewed every third of the lease while the takeover waited: never a lease without one.
    distinct = sorted(set(beats))
    assert len(distinct) >= 3, beats
    assert max(b - a for a, b in pairwise(distinct)) < LEASE * 1000, distinct
