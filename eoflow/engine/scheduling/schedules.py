"""@scheduled: run a workflow at the times of a cron expression, each time exactly once.

    @scheduled("*/5 * * * *")          # minute hour day-of-month month day-of-week (UTC);
                                       # six fields put seconds first: "*/10 * * * * *"
    @workflow()
    def report(scheduled_at: datetime, started_at: datetime): ...

Each scheduled time is the idempotency key: its run's id is `sched:{workflow}:{ISO time}`, so
a time is never run twice, however often the app restarts. After downtime, `missed` decides:
"latest" (default) runs only the most recent missed time, "all" runs every missed time (at
most MAX_CATCH_UP), "skip" runs none.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eoflow.engine import starts
from eoflow.engine.background import Background
from eoflow.engine.registry import Definition, DictStore, Kind
from eoflow.engine.runtime import Runtime
from eoflow.errors import ConfigError, DefinitionError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("eoflow.engine")
MAX_CATCH_UP = 1000
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 6))
DAYS_IN_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31,
                 11: 30, 12: 31}  # February counts its leap day: "0 0 29 2 *" does match
NAMES = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8,
         "sep": 9, "oct": 10, "nov": 11, "dec": 12,
         "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def _value(text: str, low: int, high: int, expression: str, field: str) -> int:
    number = NAMES.get(text.lower()) if not text.isdigit() else int(text)
    if number == 7 and field == "day of week":
        number = 0  # Sunday, both ways
    if number is None or not low <= number <= high:
        raise ConfigError(f"cron {expression!r}", f"{field} value {text!r} is not in "
                                                  f"{low}-{high}")
    return number


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression (UTC): five fields, or six with seconds first."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ConfigError(f"cron {expression!r}", "needs 5 fields (minute hour "
                                                      "day-of-month month day-of-week), or 6 "
                                                      "with seconds first")
        sets = []
        for part, (field, low, high) in zip(parts, (("second", 0, 59), *FIELDS), strict=True):
            values: set[int] = set()
            for item in part.split(","):
                body, _, step_text = item.partition("/")
                step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
                if step_text and step is None:
                    raise ConfigError(f"cron {expression!r}", f"bad step in {field}: {item!r}")
                if body == "*":
                    start, end = low, high
                elif "-" in body:
                    first, _, last = body.partition("-")
                    start = _value(first, low, high, expression, field)
                    end = _value(last, low, high, expression, field)
                    if start > end:
                        raise ConfigError(f"cron {expression!r}", f"empty range in {field}")
                else:
                    start = _value(body, low, high, expression, field)
                    end = high if step else start
                values.update(range(start, end + 1, step or 1))
            sets.append(frozenset(values))
        second, minute, hour, day, month, weekday = sets
        if parts[3] != "*" and parts[5] == "*":  # days of month alone choose the day
            longest = max(DAYS_IN_MONTH[m] for m in month)
            if min(day) > longest:
                months = ",".join(str(m) for m in sorted(month))
                raise ConfigError(f"cron {expression!r}", (
                    f"never matches: day of month {min(day)} never occurs in month(s) "
                    f"{months}"))
        return cls(expression, second, minute, hour, day, month, weekday, parts[3] == "*",
                   parts[5] == "*")

    def _day_matches(self, moment: dt.datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:  # cron: both restricted means either matches
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first matching second strictly after `moment` (UTC)."""
        at = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
        for _ in range(100_000):
            if at.month not in self.months:
                at = (at.replace(day=1, hour=0, minute=0, second=0)
                      + dt.timedelta(days=32)).replace(day=1)
            elif not self._day_matches(at):
                at = at.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
            elif at.hour not in self.hours:
                at = at.replace(minute=0, second=0) + dt.timedelta(hours=1)
            elif at.minute not in self.minutes:
                at = at.replace(second=0) + dt.timedelta(minutes=1)
            elif at.second not in self.seconds:
                at += dt.timedelta(seconds=1)
            else:
                return at
        raise ConfigError(f"cron {self.expression!r}", "never matches")


@dataclass(frozen=True)
class Schedule:
    definition: Definition
    cron: Cron
    missed: str


SCHEDULES: DictStore[Schedule] = DictStore()  # by workflow name: one schedule a workflow


def scheduled(expression: str, *, missed: str = "latest") -> Callable[[F], F]:
    """Run the decorated @workflow at each time of `expression` (see the module docstring)."""
    cron = Cron.parse(expression)
    if missed not in ("latest", "all", "skip"):
        raise ConfigError("scheduled", f"missed must be 'latest', 'all' or 'skip', "
                                       f"got {missed!r}")

    def decorate(fn: F) -> F:
        definition = getattr(fn, "__eoflow__", None)
        if not isinstance(definition, Definition) or definition.kind is not Kind.WORKFLOW:
            raise DefinitionError(getattr(fn, "__qualname__", repr(fn)),
                                  "@scheduled goes above @workflow(), on a function taking "
                                  "(scheduled_at, started_at)")
        with SCHEDULES.lock:
            SCHEDULES.items[definition.name] = Schedule(definition, cron, missed)
        return fn

    return decorate


def run_id(schedule: Schedule, moment: dt.datetime) -> str:
    """The id of the run for one scheduled time: its idempotency key. Never change it."""
    return f"sched:{schedule.definition.name}:{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"


class Scheduler(Background):
    """Starts each schedule's runs on time, on the engine's clock."""

    def __init__(self, runtime: Runtime, schedules: list[Schedule]) -> None:
        super().__init__("eoflow-schedules")
        self.runtime = runtime
        self.schedules = schedules

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.runtime.clock.now_ms() / 1000, tz=dt.timezone.utc)

    def _start(self, schedule: Schedule, moment: dt.datetime) -> None:
        wid = run_id(schedule, moment)
        starts.start(self.runtime, schedule.definition, (moment, self._now()), {},
                     workflow_id=wid)

    def catch_up(self, schedule: Schedule, now: dt.datetime) -> dt.datetime:
        """Run missed times per the policy; return the time to count the next one from."""
        prefix = f"sched:{schedule.definition.name}:"
        last_id = self.runtime.journal.latest_run_of(schedule.definition.name, prefix)
        if last_id is None:
            return now  # a new schedule starts from now: nothing was missed
        last = dt.datetime.strptime(last_id[len(prefix):], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc)
        missed: list[dt.datetime] = []
        moment = schedule.cron.next_after(last)
        while moment <= now and len(missed) < MAX_CATCH_UP:
            missed.append(moment)
            moment = schedule.cron.next_after(moment)
        if missed and schedule.missed != "skip":
            chosen = missed if schedule.missed == "all" else missed[-1:]
            log.info("schedule %s: %d missed time(s), running %d (%s)",
                     schedule.definition.name, len(missed), len(chosen), schedule.missed)
            for moment in chosen:
                self._start(schedule, moment)
        return now

    def _run(self) -> None:
        """Serve every schedule: one that fails (its catch-up, its next time) is logged and
        dropped; the others go on. The one thread never dies of one schedule."""
        now = self._now()
        due: dict[int, dt.datetime] = {}
        for schedule in self.schedules:
            self._advance(schedule, due, functools.partial(self._first_due, schedule, now))
        while not self._stop.is_set() and due:
            schedule = min((s for s in self.schedules if id(s) in due),
                           key=lambda s: due[id(s)])
            wait = (due[id(schedule)] - self._now()).total_seconds()
            if wait > 0:
                self.runtime.clock.wait(min(wait, 60.0), self._stop)
                continue
            try:
                self._start(schedule, due[id(schedule)])
            except Exception as error:
                if self._stop.is_set():
                    return
                log.error("schedule %s: could not start the run for %s: %s",
                          schedule.definition.name, due[id(schedule)], error)
            self._advance(schedule, due,
                          functools.partial(schedule.cron.next_after, due[id(schedule)]))

    def _first_due(self, schedule: Schedule, now: dt.datetime) -> dt.datetime:
        return schedule.cron.next_after(self.catch_up(schedule, now))

    def _advance(self, schedule: Schedule, due: dict[int, dt.datetime],
                 following: Callable[[], dt.datetime]) -> None:
        try:
            due[id(schedule)] = following()
        except Exception as error:
            due.pop(id(schedule), None)
            log.error("schedule %s: stopped, its next time cannot be computed: %s",
                      schedule.definition.name, error)
