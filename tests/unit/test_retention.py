"""Retention: what a prune forgets, and above all what it never forgets."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import eoflow
from eoflow import Engine, Status, step, transaction, workflow
from eoflow.engine.clock import FakeClock
from eoflow.engine.config import EngineConfig, parse_duration
from eoflow.errors import ConfigError
from eoflow.journal.kafka_keys import message_key, parse_message_key
from eoflow.journal.records import KafkaKey
from tests.portable import app_sql, journal_sql

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

DAY = 86400.0


@step()
def r_double(x: int) -> int:
    return x * 2


@transaction()
def r_insert(x: int) -> int:
    app_sql("CREATE TABLE IF NOT EXISTS r_rows (x INTEGER)")
    app_sql("INSERT INTO r_rows VALUES (?)", (x,))
    return x


@workflow()
def r_work(x: int) -> int:
    eoflow.set_event("seen", x)
    return r_insert(r_double(x))


@workflow()
def r_sender(destination: str) -> None:
    eoflow.send(destination, "for a finished run")


def rows(path: str, sql: str) -> list[tuple[object, ...]]:
    return journal_sql(path, sql)


def count(path: str, table: str, where: str = "1=1") -> int:
    return int(rows(path, f"SELECT count(*) FROM {table} WHERE {where}")[0][0])  # type: ignore[call-overload]


def set_status(path: str, workflow_id: str, status: str, parent: str | None = None) -> None:
    journal_sql(path, "UPDATE eoflow_workflows SET status = ?, parent_id = coalesce(?, parent_id) "
                      "WHERE workflow_id = ?", (status, parent, workflow_id))


# -- durations and configuration ------------------------------------------------------------


@pytest.mark.parametrize(("raw", "seconds"), [
    ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
    ("1.5h", 5400), ("250ms", 0.25), ("30", 30), (45, 45), (0.5, 0.5)])
def test_durations(raw: str | float, seconds: float) -> None:
    assert parse_duration("retention", raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "7 days", "d", "-1d", "0s", "nan", "inf", "1y"])
def test_a_bad_duration_names_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match="retention"):
        parse_duration("retention", raw)


def test_retention_is_off_by_default_and_read_from_the_environment() -> None:
    assert EngineConfig.resolve(env={}).retention is None
    assert EngineConfig.resolve(env={"EOFLOW_RETENTION": "12h"}).retention == 43200
    assert EngineConfig.resolve(retention="90s", env={"EOFLOW_RETENTION": "12h"}).retention == 90
    with pytest.raises(ConfigError, match="retention"):
        EngineConfig.resolve(env={"EOFLOW_RETENTION": "soon"})


def test_keys_read_back() -> None:
    for incarnation in (0, 3):
        key = message_key("g:with:colons", "orders.v1", 7, 123456, incarnation)
        parsed = parse_message_key(key)
        assert parsed is not None
        assert (parsed.group_id, parsed.topic, parsed.partition, parsed.offset,
                parsed.incarnation) == ("g:with:colons", "orders.v1", 7, 123456, incarnation)
    for other in ("order-1", "kafka:", "kafka:t:x:1:g", "kafka:t:1:2@z:g"):
        assert parse_message_key(other) is None


# -- what goes --------------------------------------------------------------------------------


def test_finished_runs_go_with_everything_they_own(engine: Engine, clock: FakeClock,
                                                   journal_path: str) -> None:
    for i in range(3):
        engine.run(r_work, i, workflow_id=f"old-{i}")
    engine.run(r_sender, "old-0", workflow_id="old-sender")
    clock.advance(2 * DAY)
    engine.run(r_work, 9, workflow_id="new")
    before = count(journal_path, "eoflow_steps")
    report = engine.prune("1d")
    assert report.runs == 4
    assert [r[0] for r in rows(journal_path, "SELECT workflow_id FROM eoflow_workflows")] == \
        ["new"]
    assert count(journal_path, "eoflow_steps") == before - report.steps
    assert report.steps == 3 * 3 + 1  # set_event, step, transaction; send
    assert count(journal_path, "eoflow_steps", "workflow_id LIKE 'old-%'") == 0
    assert count(journal_path, "eoflow_tx_outputs", "workflow_id LIKE 'old-%'") == 0
    assert count(journal_path, "eoflow_events", "workflow_id LIKE 'old-%'") == 0
    assert count(journal_path, "eoflow_messages") == 0 and report.messages == 1
    assert (report.events, report.tx_outputs) == (3, 0)  # outputs live in the step records
    assert rows(journal_path, "SELECT x FROM r_rows ORDER BY x") == [(0,), (2,), (4,), (18,)]
    assert engine.prune("1d").removed == 0  # nothing left to forget


def test_live_runs_and_children_of_live_parents_stay(engine: Engine, clock: FakeClock,
                                                     journal_path: str) -> None:
    for name in ("pending", "enqueued", "parked", "parent", "child", "orphan", "done"):
        engine.run(r_work, 1, workflow_id=name)
    for name, status in (("pending", "PENDING"), ("enqueued", "ENQUEUED"),
                         ("parked", "PARKED"), ("parent", "PENDING")):
        set_status(journal_path, name, status)
    set_status(journal_path, "child", "SUCCESS", parent="parent")
    set_status(journal_path, "orphan", "CANCELLED", parent="done")  # its parent finished too
    clock.advance(2 * DAY)
    assert engine.prune("1d").runs == 2
    assert sorted(r[0] for r in rows(journal_path, "SELECT workflow_id FROM eoflow_workflows")) \
        == ["child", "enqueued", "parent", "parked", "pending"]
    assert count(journal_path, "eoflow_steps", "workflow_id = 'pending'") == 3


def test_the_window_is_measured_from_the_last_change(engine: Engine, clock: FakeClock) -> None:
    engine.run(r_work, 1, workflow_id="a")
    clock.advance(DAY - 1)
    assert engine.prune("1d").runs == 0
    clock.advance(2)
    assert engine.prune("1d").runs == 1


def test_many_runs_go_in_small_batches(engine: Engine, clock: FakeClock) -> None:
    handles = [engine.start(r_double_wf, i) for i in range(1200)]
    for h in handles:
        h.result(timeout=30)
    clock.advance(2 * DAY)
    report = engine.prune("1d")
    assert report.runs == 1200 and report.batches >= 12  # 100 runs per transaction at most
    assert report.longest_batch_ms > 0


@workflow()
def r_double_wf(x: int) -> int:
    return r_double(x)


# -- Kafka records: never one the consumer could read again -----------------------------------


def kafka_key(offset: int, partition: int = 0, incarnation: int = 0) -> KafkaKey:
    return KafkaKey(message_key("g", "t", partition, offset, incarnation), "g", "t", partition,
                    offset)


def test_kafka_runs_and_keys_go_only_below_the_mark(engine: Engine, clock: FakeClock,
                                                    journal_path: str) -> None:
    journal, tx = engine.journal, engine.runtime.txstore
    keys = [kafka_key(o) for o in range(6)]
    # offsets 0-2 and 5: runs (the workflow path); 3-4: keys applied with a transaction
    for k in keys[:3] + keys[5:]:
        engine.run(r_double_wf, 1, workflow_id=k.key)
    tx.apply_keyed([(k.key, "h", lambda conn: None, "t/0") for k in keys[3:5]],
                   clock.now_ms())
    journal.note_offsets(keys[:5], clock.now_ms())  # offset 5: recorded, mark not moved yet
    clock.advance(2 * DAY)
    report = engine.prune("1d")
    # The mark is offset 4: below it everything may go, the message at the mark stays (it
    # backs the mark), and so does everything above it.
    assert (report.runs, report.kafka_keys) == (3, 1)
    assert [r[0] for r in rows(journal_path, "SELECT key FROM eoflow_kafka_keys")] == \
        [keys[4].key]
    assert [r[0] for r in rows(journal_path, "SELECT workflow_id FROM eoflow_workflows")] == \
        [keys[5].key]


def test_keys_of_a_former_incarnation_go(engine: Engine, clock: FakeClock,
                                         journal_path: str) -> None:
    from eoflow.journal import admin

    old = [kafka_key(o) for o in range(3)]
    engine.runtime.txstore.apply_keyed([(k.key, "h", lambda conn: None, "t/0") for k in old],
                                       clock.now_ms())
    engine.journal.note_offsets(old, clock.now_ms())
    engine.journal.set_retention(None)  # a write that waits: the note above is durable
    admin.restart_topic(journal_path, "g", "t")  # offsets forgotten, incarnation 1
    new = kafka_key(0, incarnation=1)
    engine.runtime.txstore.apply_keyed([(new.key, "h", lambda conn: None, "t/0")],
                                       clock.now_ms())
    clock.advance(2 * DAY)
    assert engine.prune("1d").kafka_keys == 3
    assert [r[0] for r in rows(journal_path, "SELECT key FROM eoflow_kafka_keys")] == [new.key]


def test_quarantine_stays_until_retried(engine: Engine, clock: FakeClock,
                                        journal_path: str) -> None:
    keys = [kafka_key(o) for o in range(4)]
    for k in keys:
        engine.journal.quarantine(k, "h", None, b"v", "[]", None, "{}", 3, clock.now_ms())
    engine.journal.note_offsets(keys, clock.now_ms())
    for k in keys[:2] + keys[3:]:
        engine.journal.set_quarantine_status(k.key, "RETRIED")
    clock.advance(2 * DAY)
    assert engine.prune("1d").quarantine == 2
    # offset 2 is still quarantined; offset 3, retried, backs the mark
    assert sorted(r[0] for r in rows(journal_path, 'SELECT "offset" FROM eoflow_quarantine')) == \
        [2, 3]


def test_an_app_database_is_pruned_too(tmp_path: Path, clock: FakeClock) -> None:
    journal, app_db = os.fspath(tmp_path / "j.db"), os.fspath(tmp_path / "app.db")
    with Engine(journal=journal, app_db=app_db, clock=clock) as engine:
        engine.run(r_work, 1, workflow_id="w")
        keys = [kafka_key(o) for o in range(3)]
        engine.runtime.txstore.apply_keyed([(k.key, "h", lambda conn: None, "t/0")
                                            for k in keys], clock.now_ms())
        engine.journal.note_offsets(keys, clock.now_ms())
        assert count(app_db, "eoflow_tx_outputs") == 1
        clock.advance(2 * DAY)
        report = engine.prune("1d")
    assert (report.runs, report.tx_outputs, report.kafka_keys) == (1, 1, 2)
    assert count(app_db, "eoflow_tx_outputs") == 0
    assert count(app_db, "eoflow_kafka_keys") == 1
    assert count(app_db, "r_rows") == 1  # the application's own data is never touched


# -- the background pruner --------------------------------------------------------------------


def test_the_engine_prunes_in_the_background(journal_path: str) -> None:
    clock = FakeClock()
    with Engine(journal=journal_path, clock=clock, retention="1h") as engine:
        assert engine.pruner is not None and engine.pruner.interval == 60
        engine.pruner.interval = 0.05  # real seconds between passes, for the test
        engine.run(r_work, 1, workflow_id="a")
        clock.advance(3601)
        engine.run(r_work, 2, workflow_id="b")
        stop = threading.Event()
        for _ in range(200):
            if count(journal_path, "eoflow_workflows") == 1:
                break
            stop.wait(0.05)
        assert [r[0] for r in rows(journal_path, "SELECT workflow_id FROM eoflow_workflows")] \
            == ["b"]
        assert engine.pruner.removed.runs == 1
        assert rows(journal_path, "SELECT value FROM eoflow_meta WHERE key = 'retention_ms'") \
            == [("3600000",)]
    with Engine(journal=journal_path, clock=clock) as engine:  # retention off: said so
        assert engine.pruner is None
    assert rows(journal_path, "SELECT value FROM eoflow_meta WHERE key = 'retention_ms'") == []


def test_without_retention_nothing_is_ever_deleted(journal_path: str) -> None:
    clock = FakeClock()
    with Engine(journal=journal_path, clock=clock) as engine:
        engine.run(r_work, 1, workflow_id="a")
        clock.advance(365 * DAY)
        engine.run(r_work, 2, workflow_id="b")
        assert engine.pruner is None
        assert engine.retrieve("a").status() is Status.SUCCESS
    assert count(journal_path, "eoflow_workflows") == 2
