"""Durable primitives used inside workflows: sleep, messages (send/recv), events.

Each is journaled as steps so that replay returns exactly what the first execution saw:
- `sleep` records its wake-up time first; a run restarted mid-sleep wakes at that time. A sleep
  longer than SUSPEND_AFTER releases its worker thread: the run is suspended and a timer
  resumes it (by replay) when it is due.
- `recv` and `get_event` inside a workflow record their deadline, then their outcome (the
  message or event, or None on timeout), so replay never waits again or sees another value.
"""

from __future__ import annotations

from typing import Any

from eoflow.engine import crashpoints
from eoflow.engine.context import RunContext, active_runtime, current_run, require_run
from eoflow.engine.executor import begin, encode_value, journal_step, journaled
from eoflow.engine.runtime import Runtime
from eoflow.errors import ConfigError, ContextError
from eoflow.journal import codec
from eoflow.journal.records import StepKind, StepRecord

SUSPEND_AFTER = 1.0  # seconds; shorter sleeps keep their thread, which is cheaper than replay
POLL_SLICE = 1.0  # seconds between re-checks while waiting for a message or an event
DEFAULT_TOPIC = ""


class Suspended(BaseException):
    """Unwinds a workflow that sleeps past SUSPEND_AFTER; the engine resumes it at `wake_ms`."""

    def __init__(self, wake_ms: int) -> None:
        super().__init__(wake_ms)
        self.wake_ms = wake_ms


def _timeout(what: str, timeout: float) -> float:
    if timeout is None or timeout < 0:
        raise ConfigError(what, f"timeout must be a number of seconds >= 0, got {timeout!r}")
    return float(timeout)


def _deadline(run: RunContext, name: str, seconds: float) -> int:
    """Record (or replay) the moment `seconds` from now as a SLEEP step; return it."""
    number, record = begin(run, name, StepKind.SLEEP)
    if record is not None:
        return int(codec.decode(record.output))
    now = run.runtime.clock.now_ms()
    wake = now + int(round(seconds * 1000))
    journal_step(run, StepRecord(run.workflow_id, number, name, StepKind.SLEEP,
                                 codec.encode(wake), None, 1, now, now))
    return wake


def sleep(seconds: float) -> None:
    """Sleep durably inside a workflow: a crash or restart does not change when it wakes."""
    seconds = _timeout("eoflow.sleep", seconds)
    run = require_run("eoflow.sleep()")
    wake = _deadline(run, "eoflow.sleep", seconds)
    remaining = (wake - run.runtime.clock.now_ms()) / 1000
    if remaining <= 0:
        return
    tel = run.runtime.telemetry
    span = None if tel is None else tel.begin_step("eoflow.sleep", "sleep", run.step)
    outcome = "suspended" if remaining > SUSPEND_AFTER else "interrupted"
    try:
        if remaining > SUSPEND_AFTER:
            raise Suspended(wake)
        if run.runtime.clock.wait(remaining, run.wakeup):
            run.check_boundary()
        outcome = "SUCCESS"
    finally:
        if tel is not None and span is not None:
            tel.end(span, outcome)


def send(destination_id: str, message: Any, topic: str | None = None) -> None:
    """Send `message` to workflow `destination_id` (delivered once, in order per topic).

    From a workflow the send is a step: exactly once, however often the workflow replays."""
    rt = active_runtime()
    if rt is None:
        raise ContextError("eoflow.send() needs a running eoflow engine")
    topic = topic or DEFAULT_TOPIC
    text = encode_value("eoflow.send", "a message", message)
    now = rt.clock.now_ms()
    run = current_run.get()
    if run is None or run.in_step or run.in_transaction:
        rt.journal.send_message(destination_id, topic, text, now)
    else:
        number, record = begin(run, "eoflow.send", StepKind.SEND)
        if record is not None:
            return
        journaled(run, "a send", rt.journal.send_message, destination_id, topic, text, now,
                  StepRecord(run.workflow_id, number, "eoflow.send", StepKind.SEND,
                             codec.encode(destination_id), None, 1, now, now))
        crashpoints.hit("after_step")
    rt.notifier.notify((destination_id, "msg:" + topic))


def recv(topic: str | None = None, timeout: float = 60) -> Any:
    """The next message sent to this workflow on `topic`, or None after `timeout` seconds.
    Both outcomes are journaled: replay returns the same message (or None)."""
    timeout = _timeout("eoflow.recv", timeout)
    run = require_run("eoflow.recv()")
    topic = topic or DEFAULT_TOPIC
    deadline = _deadline(run, "eoflow.recv.deadline", timeout)
    number, record = begin(run, "eoflow.recv", StepKind.RECV)
    if record is not None:
        return codec.decode(record.output)
    rt = run.runtime
    tel = rt.telemetry
    span = None if tel is None else tel.begin_step("eoflow.recv", "recv", number)
    outcome = "interrupted"
    try:
        message = _receive(run, number, topic, deadline)
        outcome = "SUCCESS" if message is not None else "timed out"
        return message
    finally:
        if tel is not None and span is not None:
            tel.end(span, outcome)


def _receive(run: RunContext, number: int, topic: str, deadline: int) -> Any:
    rt = run.runtime
    with rt.notifier.waiting((run.workflow_id, "msg:" + topic)) as arrived:
        while True:
            now = rt.clock.now_ms()
            step = StepRecord(run.workflow_id, number, "eoflow.recv", StepKind.RECV, None, None,
                              1, now, now)
            message = journaled(run, "a recv", rt.journal.take_message, run.workflow_id, topic,
                                step)
            if message is not None:
                return codec.decode(message)
            if now >= deadline:
                journal_step(run, StepRecord(run.workflow_id, number, "eoflow.recv",
                                             StepKind.RECV, codec.encode(None), None, 1, now, now))
                return None
            arrived.clear()
            rt.clock.wait(min(POLL_SLICE, (deadline - now) / 1000), arrived)
            run.check_boundary()


def set_event(key: str, value: Any) -> None:
    """Publish `value` under `key` for this workflow (others read it with get_event).

    From a workflow it is a step of its own (exactly once). From inside a step (as DBOS allows)
    it is part of that step: a step that is retried, or run again after a crash, publishes
    again, and the last value wins."""
    run = current_run.get()
    if run is not None and run.in_step and not run.in_transaction:
        text = encode_value("eoflow.set_event", "an event value", value)
        run.runtime.journal.set_event(run.workflow_id, key, text, run.runtime.clock.now_ms(),
                                      None)
        run.runtime.notifier.notify((run.workflow_id, "event:" + key))
        return
    run = require_run("eoflow.set_event()")
    number, record = begin(run, "eoflow.set_event", StepKind.SET_EVENT)
    if record is not None:
        return
    text = encode_value("eoflow.set_event", "an event value", value)
    now = run.runtime.clock.now_ms()
    # The step keeps the value it published (a fork that reuses this step publishes it again).
    journaled(run, "an event", run.runtime.journal.set_event, run.workflow_id, key, text, now,
              StepRecord(run.workflow_id, number, "eoflow.set_event", StepKind.SET_EVENT,
                         codec.encode({"key": key, "value": text}), None, 1, now, now))
    run.runtime.notifier.notify((run.workflow_id, "event:" + key))


def get_event(workflow_id: str, key: str, timeout: float = 60) -> Any:
    """The value workflow `workflow_id` published under `key`, waiting up to `timeout`
    seconds; None if none by then. Inside a workflow the outcome is journaled."""
    timeout = _timeout("eoflow.get_event", timeout)
    run = current_run.get()
    rt = active_runtime()
    if rt is None:
        raise ContextError("eoflow.get_event() needs a running eoflow engine")
    if run is not None and not (run.in_step or run.in_transaction):
        deadline = _deadline(run, "eoflow.get_event.deadline", timeout)
        number, record = begin(run, "eoflow.get_event", StepKind.GET_EVENT)
        if record is not None:
            return codec.decode(record.output)
        value = _await_event(rt, workflow_id, key, deadline, run)
        now = rt.clock.now_ms()
        journal_step(run, StepRecord(run.workflow_id, number, "eoflow.get_event",
                                     StepKind.GET_EVENT, value or codec.encode(None), None, 1,
                                     now, now))
        return codec.decode(value) if value is not None else None
    deadline = rt.clock.now_ms() + int(timeout * 1000)
    value = _await_event(rt, workflow_id, key, deadline, None)
    return codec.decode(value) if value is not None else None


def _await_event(rt: Runtime, workflow_id: str, key: str, deadline: int,
                 run: RunContext | None) -> str | None:
    with rt.notifier.waiting((workflow_id, "event:" + key)) as arrived:
        while True:
            value: str | None = rt.journal.get_event(workflow_id, key)
            now = rt.clock.now_ms()
            if value is not None or now >= deadline:
                return value
            arrived.clear()
            rt.clock.wait(min(POLL_SLICE, (deadline - now) / 1000), arrived)
            if run is not None:
                run.check_boundary()
