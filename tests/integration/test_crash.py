"""kill -9 at every journal boundary, and at random moments: nothing lost, nothing twice."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eoflow.journal import codec
from eoflow.testing import run_app
from tests.portable import journal_sql

APP = str(Path(__file__).parent / "apps" / "orders.py")
ORDERS = 24
pytestmark = pytest.mark.crash
BACKENDS = ("sqlite", "postgres")  # the journal-boundary and random kills run on both


def side_effects(path: Path) -> collections.Counter[str]:
    return collections.Counter(path.read_text().splitlines()) if path.exists() else \
        collections.Counter()


def recorded_steps(journal: str) -> set[str]:
    """'order-id stepname' for every step record in the journal."""
    rows = journal_sql(journal, "SELECT workflow_id, name FROM eoflow_steps")
    names = {"reserve": "reserve", "charge": "charge", "ship": "ship"}
    return {f"o{wid.split('-')[1]} {names[name]}" for wid, name in rows if name in names}


Snapshot = tuple[collections.Counter[str], set[str]]


def check_final_state(journal: str, snapshots: list[Snapshot],
                      effects_after: collections.Counter[str], orders: int = ORDERS) -> None:
    runs = journal_sql(journal, "SELECT workflow_id, status, output FROM eoflow_workflows")
    paid = dict(journal_sql(journal, "SELECT order_id, count(*) FROM payments GROUP BY order_id"))
    assert len(runs) == orders
    for workflow_id, status, output in runs:
        i = int(workflow_id.split("-")[1])
        assert status == "SUCCESS", workflow_id
        assert codec.decode(output) == {"order": f"o{i}", "reservation": f"r-o{i}",
                                        "cents": i * 100, "status": "shipped"}
    assert paid == {f"o{i}": 1 for i in range(orders)}  # each transaction exactly once
    for effects_before, recorded_before in snapshots:
        for event in recorded_before:  # a step recorded before a crash never ran again
            assert effects_after[event] == effects_before[event], event
    for i in range(orders):  # and every step ran at least once
        for name in ("reserve", "charge", "ship"):
            assert effects_after[f"o{i} {name}"] >= 1


@pytest.mark.parametrize("point,nth", [
    ("after_start", 1), ("before_step", 1), ("before_step", 30), ("in_transaction", 1),
    ("in_transaction", 9), ("after_step", 1), ("after_step", 41), ("before_outcome", 1),
    ("before_outcome", 13), ("after_outcome", 1), ("after_outcome", 20),
])
def test_kill_at_each_journal_boundary(journal_path: str, tmp_path: Path, point: str,
                                       nth: int) -> None:
    journal, log = journal_path, tmp_path / "effects.log"
    env = {**os.environ, "SIDE_EFFECTS": str(log)}
    crashed = run_app([sys.executable, APP, journal, str(ORDERS)], crash_at=point, nth=nth,
                      env=env)
    assert crashed.killed, crashed.stderr
    snapshot = (side_effects(log), recorded_steps(journal))
    finished = run_app([sys.executable, APP, journal, str(ORDERS)], env=env)
    assert finished.returncode == 0, finished.stderr
    check_final_state(journal, [snapshot], side_effects(log))


def test_normal_durability_survives_a_process_kill(tmp_path: Path) -> None:
    """durability="normal" may lose the last commits on power loss, not on a process crash."""
    journal, log = str(tmp_path / "j.db"), tmp_path / "effects.log"
    env = {**os.environ, "SIDE_EFFECTS": str(log), "EOFLOW_DURABILITY": "normal"}
    crashed = run_app([sys.executable, APP, journal, str(ORDERS)], crash_at="after_step",
                      nth=41, env=env)
    assert crashed.killed, crashed.stderr
    snapshot = (side_effects(log), recorded_steps(journal))
    finished = run_app([sys.executable, APP, journal, str(ORDERS)], env=env)
    assert finished.returncode == 0, finished.stderr
    check_final_state(journal, [snapshot], side_effects(log))


def test_kill_at_random_moments(journal_path: str, tmp_path: Path) -> None:
    journal, log = journal_path, tmp_path / "effects.log"
    env = {**os.environ, "SIDE_EFFECTS": str(log)}
    rng, orders, kills = random.Random(7), 80, 0
    snapshots: list[Snapshot] = []
    for _ in range(6):
        process = subprocess.Popen(
            [sys.executable, APP, journal, str(orders), "4", "0.05"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 1.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        snapshots.append((side_effects(log), recorded_steps(journal)))
    assert kills >= 4
    finished = run_app([sys.executable, APP, journal, str(orders)], env=env)
    assert finished.returncode == 0, finished.stderr
    check_final_state(journal, snapshots, side_effects(log), orders)
