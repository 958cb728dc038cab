"""Three `eoflow run` processes on one PostgreSQL journal and one consumer group: the group
spreads six partitions over them, a random one is killed (SIGKILL) and started again, round
after round, while messages flow through both paths. Afterwards every message was applied
exactly once, every run finished once, and the executors that were killed were taken over."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.portable import journal_sql

from .conftest import new_topic, produce_ids
from .test_chaos import counts, start_app

ROUNDS = 6
CHUNK = 120  # messages per topic before each round, and before the end
MESSAGES = (ROUNDS + 1) * CHUNK
ENGINES = 3


@pytest.mark.parametrize("backend", ["postgres"])
def test_three_engines_killed_in_turn_apply_every_message_once(
        broker: str, journal_path: str, tmp_path: Path) -> None:
    wf_topic, tx_topic = new_topic(broker, partitions=6), new_topic(broker, partitions=6)
    env = {**os.environ, "CHAOS_WF_TOPIC": wf_topic, "CHAOS_TX_TOPIC": tx_topic,
           # A lease longer than the group's session (6 s), and slow steps: a killed engine's
           # partitions reach another engine while its runs are still PENDING under it, and
           # their new runs must wait for them (lanes.py) to keep each partition's order.
           "EOFLOW_LEASE": "8s", "CHAOS_STEP_SLEEP": "0.03"}
    rng = random.Random(14)
    logs = [tmp_path / f"engine{i}.log" for i in range(ENGINES)]
    engines = [start_app(journal_path, broker, env, log) for log in logs]

    def applied() -> int:
        wf, tx, _ = counts(journal_path)
        return len(wf) + len(tx)

    def produce_round(number: int) -> None:
        ids = range(number * CHUNK, (number + 1) * CHUNK)
        produce_ids(broker, wf_topic, ids)
        produce_ids(broker, tx_topic, ids)

    killed: list[int] = []
    try:
        for number in range(ROUNDS):
            before = applied()
            produce_round(number)
            deadline = time.monotonic() + 60
            while applied() == before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.4))
            victim = rng.randrange(ENGINES)
            killed.append(engines[victim].pid)
            engines[victim].send_signal(signal.SIGKILL)
            engines[victim].wait()
            engines[victim] = start_app(journal_path, broker, env, logs[victim])
        produce_round(ROUNDS)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            wf, tx, runs = counts(journal_path)
            if len(wf) == MESSAGES and len(tx) == MESSAGES and not runs.get("PENDING"):
                break
            time.sleep(0.5)
    finally:
        for engine in engines:
            if engine.poll() is None:
                engine.send_signal(signal.SIGTERM)
        codes = [engine.wait(timeout=60) for engine in engines]
    text = "\n".join(log.read_text() for log in logs)
    assert codes == [0] * ENGINES, text[-3000:]
    wf, tx, runs = counts(journal_path)
    assert sorted(wf) == list(range(MESSAGES)) and set(wf.values()) == {1}
    assert sorted(tx) == list(range(MESSAGES)) and set(tx.values()) == {1}
    assert runs == {"SUCCESS": MESSAGES}
    # Each partition's workflows applied in offset order (ordered=True, the default), across
    # the rebalances and takeovers.
    applied_at: dict[int, list[tuple[int, int]]] = {}
    for part, off, at_ns in journal_sql(journal_path, "SELECT part, off, at_ns FROM wf_order"):
        applied_at.setdefault(part, []).append((at_ns, off))
    for part, rows in applied_at.items():
        offsets = [off for _, off in sorted(rows)]
        assert offsets == sorted(offsets), (part, offsets)
    states = dict(journal_sql(journal_path, "SELECT pid, status FROM eoflow_executors"))
    # Every killed engine that had joined was taken over (one killed while starting may not
    # have joined yet).
    joined = [pid for pid in killed if pid in states]
    assert len(joined) >= ROUNDS // 2 and {states[pid] for pid in joined} == {"EXPIRED"}, states
    assert "taking its runs over" in text
