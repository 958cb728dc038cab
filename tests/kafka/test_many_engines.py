"""Three `eoflow run` processes on one PostgreSQL journal and one consumer group: the group
spreads six partitions over them, a random one is killed (SIGKILL) or paused past its lease
(SIGSTOP, then SIGCONT: it is fenced and stops) and started again, round after round, while
messages flow through both paths. Afterwards every message was applied exactly once, in offset
order per partition, every run finished once, and every engine stopped was taken over."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.portable import journal_sql

from .conftest import new_topic, produce_ids, wait_until
from .test_chaos import counts, start_app

ROUNDS = 6
CHUNK = 120  # messages per topic before each round, during each pause, and before the end
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

    chunks = [0]

    def produce_chunk() -> None:
        ids = range(chunks[0] * CHUNK, (chunks[0] + 1) * CHUNK)
        produce_ids(broker, wf_topic, ids)
        produce_ids(broker, tx_topic, ids)
        chunks[0] += 1

    def status_of(pid: int) -> str | None:
        rows = journal_sql(journal_path, "SELECT status FROM eoflow_executors WHERE pid = ?",
                           (pid,))
        return str(rows[0][0]) if rows else None

    def sessions() -> list[tuple[object, ...]]:
        return journal_sql(journal_path, (
            "SELECT pid, application_name, state, wait_event_type, wait_event, "
            "(now() - state_change)::text, left(query, 60) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    killed: list[int] = []
    try:
        for number in range(ROUNDS):
            before = applied()
            produce_chunk()
            deadline = time.monotonic() + 60
            while applied() == before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.4))
            victim = rng.randrange(ENGINES)
            pid = engines[victim].pid
            killed.append(pid)
            if number % 2:  # paused past its lease: its partitions move to the others while
                # its runs are still its own, until they are taken over; woken, it is fenced.
                # It must have joined first (one restarted last round may still be starting:
                # paused before it registers, there is nothing of it to take over).
                wait_until(lambda pid=pid: status_of(pid) == "ALIVE", 60, "the engine to join")
                engines[victim].send_signal(signal.SIGSTOP)
                produce_chunk()  # for its partitions' next owners, while it holds runs
                try:
                    wait_until(lambda pid=pid: status_of(pid) == "EXPIRED", 60, "the takeover")
                except AssertionError as timed_out:  # what holds the journal up, if anything
                    raise AssertionError(f"{timed_out}; sessions: {sessions()}") from None
                finally:
                    engines[victim].send_signal(signal.SIGCONT)
                assert engines[victim].wait(timeout=60) != 0  # it stopped itself
            else:
                engines[victim].send_signal(signal.SIGKILL)
                engines[victim].wait()
            engines[victim] = start_app(journal_path, broker, env, logs[victim])
        produce_chunk()
        messages = chunks[0] * CHUNK
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            wf, tx, runs = counts(journal_path)
            if len(wf) == messages and len(tx) == messages and not runs.get("PENDING"):
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
    assert sorted(wf) == list(range(messages)) and set(wf.values()) == {1}
    assert sorted(tx) == list(range(messages)) and set(tx.values()) == {1}
    assert runs == {"SUCCESS": messages}
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
    assert len(joined) >= ROUNDS // 2 and {states[pid] for pid in joined} == {"EXPIRED"}, \
        (states, killed, text[-4000:])
    assert "taking its runs over" in text and "its lease ran out" in text
