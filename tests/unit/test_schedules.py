"""Cron parsing and @scheduled runs on an injected clock: each time once, missed policy."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from eoflow import Engine, scheduled, step, workflow
from eoflow.engine.clock import FakeClock
from eoflow.engine.scheduling.schedules import SCHEDULES, Cron, Scheduler, run_id
from eoflow.errors import ConfigError

BACKENDS = ("sqlite", "postgres")  # each test that takes a journal runs on both

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("expression,after,expected", [
    ("*/5 * * * *", "2026-01-01T10:02:30", "2026-01-01T10:05:00"),
    ("0 9 * * 1-5", "2026-01-02T09:00:00", "2026-01-05T09:00:00"),  # Friday -> Monday
    ("30 2 1 * *", "2026-01-15T00:00:00", "2026-02-01T02:30:00"),
    ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
    ("15,45 * * jan sun", "2026-01-01T00:00:00", "2026-01-04T00:15:00"),
    ("0 12 13 * fri", "2026-02-01T00:00:00", "2026-02-06T12:00:00"),  # day OR weekday
    ("*/15 * * * * *", "2026-01-01T10:02:31", "2026-01-01T10:02:45"),  # seconds first
    ("0 0 0 1 1 *", "2026-06-01T00:00:00", "2027-01-01T00:00:00"),
])
def test_next_times(expression: str, after: str, expected: str) -> None:
    assert Cron.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize("expression,message", [
    ("* * * *", "needs 5 fields"), ("* * * * * * *", "needs 5 fields"),
    ("61 * * * *", "minute value '61'"),
    ("*/0 * * * *", "bad step"), ("5-1 * * * *", "empty range"),
    ("* * * foo *", "month value 'foo'"),
])
def test_invalid_cron_expressions(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scheduled(expression)


@scheduled("*/10 * * * *")
@workflow()
def s_tick(scheduled_at: dt.datetime, started_at: dt.datetime) -> str:
    return scheduled_at.isoformat()


def schedule_of(fn: object) -> object:
    definition = fn.__eoflow__  # type: ignore[attr-defined]
    return next(s for s in SCHEDULES.values() if s.definition is definition)


def test_each_time_runs_once_and_missed_times_follow_the_policy(journal_path: str) -> None:
    clock = FakeClock(start_ms=int(at("2026-01-01T10:00:30").timestamp() * 1000))
    with Engine(journal=journal_path, clock=clock) as engine:
        scheduler = Scheduler(engine.runtime, [schedule_of(s_tick)])
        start = scheduler.catch_up(scheduler.schedules[0], scheduler._now())
        assert start == at("2026-01-01T10:00:30")  # new schedule: nothing missed
        scheduler._start(scheduler.schedules[0], at("2026-01-01T10:10:00"))
        scheduler._start(scheduler.schedules[0], at("2026-01-01T10:10:00"))  # same time again
        runs = engine.journal.list_workflows(name="s_tick")
        assert [r.workflow_id for r in runs] == ["sched:s_tick:2026-01-01T10:10:00Z"]
        assert engine.retrieve(runs[0].workflow_id).result(timeout=10) == \
            "2026-01-01T10:10:00+00:00"
        clock.advance(3600)  # down for an hour: 10:20 ... 11:00 were missed
        scheduler.catch_up(scheduler.schedules[0], scheduler._now())
        ids = sorted(r.workflow_id for r in engine.journal.list_workflows(name="s_tick"))
        assert ids == ["sched:s_tick:2026-01-01T10:10:00Z", "sched:s_tick:2026-01-01T11:00:00Z"]


def test_the_scheduler_thread_starts_runs_on_time(journal_path: str) -> None:
    clock = FakeClock(start_ms=int(at("2026-01-01T10:00:30").timestamp() * 1000))
    with Engine(journal=journal_path, clock=clock) as engine:
        engine.schedule(s_tick)  # its thread waits on the fake clock, which jumps ahead
        finished = threading.Event()
        for _ in range(500):
            if len(engine.journal.list_workflows(name="s_tick")) >= 3:
                break
            finished.wait(0.01)
        ids = [r.workflow_id for r in engine.journal.list_workflows(name="s_tick")]
        assert set(ids[-3:]) >= {"sched:s_tick:2026-01-01T10:10:00Z",
                                 "sched:s_tick:2026-01-01T10:20:00Z"}
        assert run_id(schedule_of(s_tick), at("2026-01-01T10:10:00")) in ids


SHARED_TICKS: list[str] = []


@step()
def s_count(moment: str) -> str:
    SHARED_TICKS.append(moment)
    time.sleep(0.2)  # still running when the other engine finds the tick started
    return moment


@scheduled("*/10 * * * *")
@workflow()
def s_shared_tick(scheduled_at: dt.datetime, started_at: dt.datetime) -> str:
    return s_count(scheduled_at.isoformat())


def test_a_tick_runs_once_across_engines_on_one_journal(pg_url: str) -> None:
    """Two engines on one PostgreSQL journal start the same time of a schedule: its run id is
    fixed, so one records it, and the other leaves it to that one's executor."""
    clock = FakeClock(start_ms=int(at("2026-01-01T10:00:30").timestamp() * 1000))
    SHARED_TICKS.clear()
    with Engine(journal=pg_url, clock=clock) as first, \
            Engine(journal=pg_url, clock=clock) as second:
        schedule = schedule_of(s_shared_tick)
        moment = at("2026-01-01T10:10:00")
        Scheduler(first.runtime, [schedule])._start(schedule, moment)
        Scheduler(second.runtime, [schedule])._start(schedule, moment)
        wid = run_id(schedule, moment)
        assert second.retrieve(wid).result(timeout=10) == moment.isoformat()
        assert first.retrieve(wid).result(timeout=10) == moment.isoformat()
    assert SHARED_TICKS == [moment.isoformat()]


@pytest.mark.parametrize("expression,message", [
    ("0 0 30 2 *", "day of month 30 never occurs in month"),
    ("0 0 31 4,6,9,11 *", "day of month 31 never occurs"),
    ("0 0 30-31 feb *", "never matches"),
    ("0 0 31 4,6 *", r"cron '0 0 31 4,6 \*'.*day of month 31 never occurs in month\(s\) 4,6"),
    ("0 0 0 30,31 2 *", "day of month 30 never occurs in month"),  # six fields
])
def test_a_cron_that_never_matches_is_refused_when_declared(expression: str,
                                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scheduled(expression)


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 * *", "0 0 30 2 1",
                                        "0 0 31 1-4 *"])
def test_rare_but_real_crons_are_accepted(expression: str) -> None:
    assert Cron.parse(expression).next_after(at("2026-01-01T00:00:00")) > at("2026-01-01")


@workflow()
def s_other(scheduled_at: dt.datetime, started_at: dt.datetime) -> str:
    return scheduled_at.isoformat()


class Broken(Cron):
    def next_after(self, moment: dt.datetime) -> dt.datetime:
        raise ConfigError("cron 'broken'", "never matches")


def test_one_failing_schedule_does_not_stop_the_others(journal_path: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from eoflow.engine.scheduling.schedules import Schedule

    clock = FakeClock(start_ms=int(at("2026-01-01T10:00:30").timestamp() * 1000))
    good = Cron.parse("*/10 * * * *")
    broken = Broken(**{f: getattr(good, f) for f in good.__dataclass_fields__})
    with Engine(journal=journal_path, clock=clock) as engine:
        scheduler = Scheduler(engine.runtime, [
            Schedule(s_other.__eoflow__, broken, "latest"),  # type: ignore[attr-defined]
            Schedule(s_tick.__eoflow__, good, "latest")])  # type: ignore[attr-defined]
        engine.runtime.add_service(scheduler)
        scheduler.start()
        for _ in range(500):
            if len(engine.journal.list_workflows(name="s_tick")) >= 2:
                break
            threading.Event().wait(0.01)
        assert len(engine.journal.list_workflows(name="s_tick")) >= 2  # the good one runs on
        assert scheduler._thread.is_alive()
    assert any("schedule s_other: stopped" in r.getMessage() for r in caplog.records)


class FailsAfterFirst(Cron):
    """Gives its first time (10:05), then cannot compute the one after it."""

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        if moment >= at("2026-01-01T10:05:00"):
            raise ConfigError(f"cron {self.expression!r}", "never matches")
        return super().next_after(moment)


def serve_until_ticks(engine: Engine, scheduler: Scheduler, count: int) -> None:
    engine.runtime.add_service(scheduler)
    scheduler.start()
    for _ in range(500):
        if len(engine.journal.list_workflows(name="s_tick")) >= count:
            return
        threading.Event().wait(0.01)


def test_a_schedule_that_fails_later_is_dropped_and_the_others_go_on(
        journal_path: str, caplog: pytest.LogCaptureFixture) -> None:
    from eoflow.engine.scheduling.schedules import Schedule

    clock = FakeClock(start_ms=int(at("2026-01-01T10:00:30").timestamp() * 1000))
    five = Cron.parse("*/5 * * * *")
    failing = FailsAfterFirst(**{f: getattr(five, f) for f in five.__dataclass_fields__})
    with Engine(journal=journal_path, clock=clock) as engine:
        scheduler = Scheduler(engine.runtime, [
            Schedule(s_other.__eoflow__, failing, "latest"),  # type: ignore[attr-defined]
            Schedule(s_tick.__eoflow__, Cron.parse("*/10 * * * *"),  # type: ignore[attr-defined]
                     "latest")])
        serve_until_ticks(engine, scheduler, 3)
        assert len(engine.journal.list_workflows(name="s_tick")) >= 3
        assert scheduler._thread.is_alive()
        assert [r.workflow_id for r in engine.journal.list_workflows(name="s_other")] == \
            ["sched:s_other:2026-01-01T10:05:00Z"]  # its one computable time ran, then it stopped
    assert any("schedule s_other: stopped" in r.getMessage() and "never matches" in
               r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_a_schedule_whose_catch_up_fails_is_dropped_and_the_others_go_on(
        journal_path: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from eoflow.engine.scheduling.schedules import Schedule

    clock = FakeClock(start_ms=int(at("2026-01-01T10:00:30").timestamp() * 1000))
    with Engine(journal=journal_path, clock=clock) as engine:
        scheduler = Scheduler(engine.runtime, [
            Schedule(s_other.__eoflow__, Cron.parse("*/5 * * * *"),  # type: ignore[attr-defined]
                     "all"),
            Schedule(s_tick.__eoflow__, Cron.parse("*/10 * * * *"),  # type: ignore[attr-defined]
                     "latest")])
        real_catch_up = scheduler.catch_up

        def catch_up(schedule: Schedule, now: dt.datetime) -> dt.datetime:
            if schedule.definition.name == "s_other":
                raise RuntimeError("history unreadable")
            return real_catch_up(schedule, now)

        monkeypatch.setattr(scheduler, "catch_up", catch_up)
        serve_until_ticks(engine, scheduler, 2)
        assert len(engine.journal.list_workflows(name="s_tick")) >= 2
        assert scheduler._thread.is_alive()
        assert engine.journal.list_workflows(name="s_other") == []
    assert any("schedule s_other" in r.getMessage() and "history unreadable" in r.getMessage()
               for r in caplog.records if r.levelname == "ERROR")
