"""A queue's concurrency limit holds across processes: three `eoflow run` on one PostgreSQL
journal never run more than the limit at once (their recorded start and end times prove it)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eoflow import Client, Status

APP = str(Path(__file__).parent / "apps" / "queue_app.py")
RUNS = 18


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_queue_limit_of_two_holds_over_three_processes(journal_path: str,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "slots.log"
    env = {**os.environ, "QUEUE_LOG": str(log)}
    engines = [subprocess.Popen([sys.executable, "-m", "eoflow.cli.main", "run", APP,
                                 "--journal", journal_path], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    try:
        time.sleep(1.0)  # the three join (a run enqueued earlier would wait for them anyway)
        with Client(journal_path) as client:
            ids = [client.enqueue("limited", "slot", i) for i in range(RUNS)]
            half = RUNS // 3
            assert [client.result(wid, timeout=60) for wid in ids[:half]] == list(range(half))
            # The engine that took the queue so far (its dispatcher refills its own slots
            # first) shuts down: the others carry on, within the same limit.
            busiest = collections.Counter(line.split()[1] for line in
                                          log.read_text().splitlines()).most_common(1)[0][0]
            stopped = next(e for e in engines if e.pid == int(busiest))
            stopped.send_signal(signal.SIGTERM)
            assert stopped.wait(timeout=60) == 0
            assert [client.result(wid, timeout=60) for wid in ids] == list(range(RUNS))
            assert {client.status(wid) for wid in ids} == {Status.SUCCESS}
    finally:
        for engine in engines:
            if engine.poll() is None:
                engine.send_signal(signal.SIGTERM)
        errors = [engine.communicate(timeout=60)[1] for engine in engines]
    assert [engine.returncode for engine in engines] == [0, 0, 0], errors
    rows = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(i) for i, _, _, _ in rows) == list(range(RUNS))  # each ran once
    assert len({pid for _, pid, _, _ in rows}) >= 2, rows  # the work was shared
    edges = sorted([(int(b), 1) for _, _, b, _ in rows] + [(int(e), -1) for _, _, _, e in rows])
    running = peak = 0
    for _, change in edges:  # an end before a start at the same instant: -1 sorts first
        running += change
        peak = max(peak, running)
    assert peak == 2, peak
