"""Many engines on one PostgreSQL journal: a killed executor's runs are taken over by another,
and one paused past its lease (SIGSTOP) cannot write once it wakes up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_crash import check_final_state, recorded_steps, side_effects
from tests.portable import journal_sql

APPS = Path(__file__).parent / "apps"
ORDERS = 24
LEASE = 1.5
pytestmark = pytest.mark.crash


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # psycopg's errors: the schema is not there yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """The test's processes, killed (and continued) if it ends before they do."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.communicate()


def executors(journal: str) -> dict[int, str]:
    """pid -> status of every executor recorded."""
    return {int(pid): str(status) for pid, status in
            journal_sql(journal, "SELECT pid, status FROM eoflow_executors")}


def executor_of(journal: str, pid: int) -> str:
    return str(journal_sql(journal, "SELECT executor_id FROM eoflow_executors WHERE pid = ?",
                           (pid,))[0][0])


def start_pair(journal: str, tmp_path: Path, processes: list[subprocess.Popen[str]],
               lease: float = LEASE) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """An executor that starts the orders (slow steps), and an idle one beside it."""
    env = {**os.environ, "SIDE_EFFECTS": str(tmp_path / "effects.log"),
           "EOFLOW_LEASE": str(lease)}
    first = subprocess.Popen([sys.executable, str(APPS / "orders.py"), journal, str(ORDERS),
                              "4", "0.1"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    processes.append(first)
    wait_for(lambda: len(recorded_steps(journal)) >= 8, 60, "the first steps")
    second = subprocess.Popen([sys.executable, str(APPS / "orders_worker.py"), journal,
                               str(ORDERS)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    processes.append(second)
    wait_for(lambda: second.pid in executors(journal), 30, "the second executor")
    return first, second


def test_a_killed_executors_runs_are_taken_over_at_once_on_its_machine(
        pg_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    # A lease far longer than the test: the killed process is seen to be gone instead.
    first, second = start_pair(pg_url, tmp_path, processes, lease=60.0)
    assert first.poll() is None, "the orders finished before the kill: slow the steps down"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed = time.monotonic()
    snapshot = (side_effects(tmp_path / "effects.log"), recorded_steps(pg_url))
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0 and "done" in out, err
    # Its process is seen to be gone (the same machine): no lease to wait for; a claim pass
    # and the remaining work (a second or so of steps here).
    took = time.monotonic() - killed
    print(f"kill -9 to every order done on the other executor: {took:.1f}s (lease 60s)")
    assert took < 1.0 + 8.0
    assert f"executor {executor_of(pg_url, first.pid)} is gone" in err
    check_final_state(pg_url, [snapshot], side_effects(tmp_path / "effects.log"))
    assert executors(pg_url) == {first.pid: "EXPIRED", second.pid: "STOPPED"}


def test_a_paused_executor_is_fenced_when_it_wakes_up(
        pg_url: str, tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    first, second = start_pair(pg_url, tmp_path, processes)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        snapshot = (side_effects(tmp_path / "effects.log"), recorded_steps(pg_url))
        wait_for(lambda: executors(pg_url).get(first.pid) == "EXPIRED", LEASE + 10,
                 "the takeover")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0 and "done" in out, err
    _, zombie = first.communicate(timeout=60)
    assert first.returncode != 0
    assert "its lease ran out" in zombie and "took its runs over" in zombie, zombie
    check_final_state(pg_url, [snapshot], side_effects(tmp_path / "effects.log"))
