"""An app for the metrics test: on start it runs workflows directly and through a queue, and
leaves one waiting in another queue; one step fails once and is retried."""

from __future__ import annotations

import eoflow
from eoflow import Queue, step, transaction, workflow

mq = Queue("mq", concurrency=2)
later = Queue("mq_later")
flaky = {"left": 1}


@step(max_attempts=2, retry_interval=0.01)
def me_step(n: int) -> int:
    if n == 0 and flaky["left"]:
        flaky["left"] -= 1
        raise ValueError("once")
    return n


@transaction()
def me_save(n: int) -> int:
    return n


@workflow()
def me_flow(n: int) -> int:
    return me_save(me_step(n))


@workflow()
def me_broken() -> None:
    raise ValueError("a run that fails")


@eoflow.on_start
def launch() -> None:
    engine = eoflow.Engine.current()
    for n in range(5):
        engine.start(me_flow, n)
    for n in range(3):
        mq.enqueue(me_flow, 10 + n)
    later.enqueue(me_flow, 99, delay=600)
    engine.start(me_broken)  # waits in its queue while the test scrapes
