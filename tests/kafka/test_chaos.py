"""`eoflow run` killed with SIGKILL at random moments while messages flow: afterwards every
message was applied exactly once through both paths, and no run is left PENDING."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eoflow.testing import crash_env
from tests.portable import journal_sql

from .conftest import new_topic, produce_ids

APP = str(Path(__file__).parent / "apps" / "chaos_app.py")
ROUNDS = 5  # kills
CHUNK = 100  # messages per topic produced before each round, and before the last start
MESSAGES = (ROUNDS + 1) * CHUNK


def counts(journal: str) -> tuple[dict[int, int], dict[int, int], dict[str, int]]:
    if journal.startswith("postgresql://"):
        ready = journal_sql(journal, "SELECT to_regclass('tx_counts') IS NOT NULL")[0][0]
    else:  # the app may be creating the file this very moment
        ready = os.path.exists(journal) and bool(journal_sql(
            journal, "SELECT 1 FROM sqlite_master WHERE name = 'tx_counts'"))
    if not ready:
        return {}, {}, {}
    wf = dict(journal_sql(journal, "SELECT id, n FROM wf_counts"))
    tx = dict(journal_sql(journal, "SELECT id, n FROM tx_counts"))
    runs = dict(journal_sql(journal,
                            "SELECT status, count(*) FROM eoflow_workflows GROUP BY status"))
    return wf, tx, runs


def start_app(journal: str, broker: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("a") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "eoflow.cli.main", "run", APP, "--journal", journal,
             "--brokers", broker, "--workers", "8"],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr)


# On PostgreSQL without retention only: a minute each, and retention's rules are the same SQL
# on both backends (tests/unit/test_retention.py runs on both).
@pytest.mark.parametrize(("backend", "retention"),
                         [("sqlite", None), ("sqlite", "2s"), ("postgres", None)])
def test_exactly_once_while_eoflow_run_is_killed_again_and_again(
        broker: str, journal_path: str, tmp_path: Path, retention: str | None) -> None:
    """With retention of 2 s too: runs and keys are forgotten between and during the kills,
    and still no message applies twice (the consumer never goes below its marks)."""
    wf_topic, tx_topic = new_topic(broker), new_topic(broker)
    env = {**os.environ, "CHAOS_WF_TOPIC": wf_topic, "CHAOS_TX_TOPIC": tx_topic}
    if retention is not None:
        env["EOFLOW_RETENTION"] = retention
    journal, log = journal_path, tmp_path / "app.log"
    rng = random.Random(2026)

    def applied() -> int:
        wf, tx, _ = counts(journal)
        return len(wf) + len(tx)

    def produce_round(number: int) -> None:
        ids = range(number * CHUNK, (number + 1) * CHUNK)
        produce_ids(broker, wf_topic, ids)
        produce_ids(broker, tx_topic, ids)

    progress = []
    for number in range(ROUNDS):
        produce_round(number)  # each round has new work, so every kill lands mid-stream
        before = applied()
        app = start_app(journal, broker, env, log)
        # Kill once this round has applied something (a killed member's partitions come back
        # only after its session times out, so joining takes a varying few seconds), at a
        # random moment soon after.
        deadline = time.monotonic() + 30
        while applied() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        app.send_signal(signal.SIGKILL)
        app.wait()
        progress.append(applied())
    produce_round(ROUNDS)
    runs_before = log.read_text().count(" running: ")
    app = start_app(journal, broker, env, log)
    deadline = time.monotonic() + 120
    while log.read_text().count(" running: ") == runs_before and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGTERM before the app installs its handlers would just kill it
    while time.monotonic() < deadline:
        wf, tx, runs = counts(journal)
        if len(wf) == MESSAGES and len(tx) == MESSAGES and not runs.get("PENDING"):
            break
        time.sleep(0.5)
    app.send_signal(signal.SIGTERM)
    assert app.wait(timeout=60) == 0, log.read_text()[-3000:]
    wf, tx, runs = counts(journal)
    print("applied after each kill:", progress)
    # The kills landed while work was under way: every round made progress, none finished all.
    assert all(a < b for a, b in zip([0, *progress], progress, strict=False)), progress
    assert progress[-1] < 2 * MESSAGES, progress
    assert sorted(wf) == list(range(MESSAGES)) and set(wf.values()) == {1}
    assert sorted(tx) == list(range(MESSAGES)) and set(tx.values()) == {1}
    if retention is None:
        assert runs == {"SUCCESS": MESSAGES}
    else:  # forgotten as they went: what is left finished lately
        assert set(runs) <= {"SUCCESS"} and runs.get("SUCCESS", 0) < MESSAGES, runs
        assert "retention: removed" in log.read_text()
        keys = journal_sql(journal, "SELECT count(*) FROM eoflow_kafka_keys")[0][0]
        assert keys < MESSAGES, keys


@pytest.mark.parametrize("path", ["wf", "tx"])
def test_records_past_the_mark_outlive_the_window_after_a_crash(
        broker: str, tmp_path: Path, path: str) -> None:
    """Killed after a batch is recorded but before its offsets reach Kafka (and, likely,
    before its mark is durable); the app comes back after the 1 s window has passed, so the
    pruner runs before Kafka redelivers that batch. Records past the mark must have stayed."""
    wf_topic, tx_topic = new_topic(broker), new_topic(broker)
    env = {**os.environ, "CHAOS_WF_TOPIC": wf_topic, "CHAOS_TX_TOPIC": tx_topic,
           "CHAOS_PATHS": path, "EOFLOW_RETENTION": "1s"}
    journal, log = str(tmp_path / "journal.db"), tmp_path / "app.log"
    produce_ids(broker, wf_topic if path == "wf" else tx_topic, range(CHUNK * 3))
    app = start_app(journal, broker, crash_env("kafka_recorded", 1, env), log)
    assert app.wait(timeout=60) == -signal.SIGKILL, log.read_text()[-3000:]
    time.sleep(2.5)  # all that was recorded is now past the window
    assigned = log.read_text().count("partitions assigned")
    app = start_app(journal, broker, env, log)
    deadline = time.monotonic() + 90
    while log.read_text().count("partitions assigned") == assigned and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the batch Kafka redelivers is handled within milliseconds
    while time.monotonic() < deadline:
        wf, tx, runs = counts(journal)
        if len(wf if path == "wf" else tx) == CHUNK * 3 and not runs.get("PENDING"):
            break
        time.sleep(0.3)
    app.send_signal(signal.SIGTERM)
    assert app.wait(timeout=60) == 0, log.read_text()[-6000:]
    applied = counts(journal)[0 if path == "wf" else 1]
    assert sorted(applied) == list(range(CHUNK * 3)), log.read_text()[-3000:]
    assert set(applied.values()) == {1}, sorted(k for k, n in applied.items() if n > 1)
    assert "retention: removed" in log.read_text()
