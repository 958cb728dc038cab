"""An app for crash tests of the durable primitives; PRIMITIVE picks the scenario.

    PRIMITIVE=sleep|messages|queue|schedule python primitives_app.py JOURNAL
"""

from __future__ import annotations

import os
import sys
import time

import eoflow
from eoflow import Engine, Queue, scheduled, step, transaction, workflow

MODE = os.environ["PRIMITIVE"]
SLEEP_S = float(os.environ.get("SLEEP_S", "4"))


@step()
def wall_ms() -> int:
    return int(time.time() * 1000)


@workflow()
def sleeper() -> list[int]:
    before = wall_ms()
    eoflow.sleep(SLEEP_S)
    return [before, wall_ms()]


@workflow()
def receiver() -> list[object]:
    return [eoflow.recv("t", timeout=60), eoflow.recv("t", timeout=1)]


@workflow()
def sender() -> str:
    eoflow.send("receiver", {"hello": "once"}, topic="t")
    return "sent"


JOBS = Queue("crash-jobs", concurrency=1)


@transaction()
def count(kind: str, key: str) -> None:
    eoflow.db().execute("INSERT INTO counts VALUES (?, ?, 1) ON CONFLICT (kind, key) DO UPDATE "
                        "SET n = n + 1", (kind, key))


@step()
def slow(i: int) -> int:
    time.sleep(0.1)
    return i


@workflow()
def job(i: int) -> int:
    slow(i)
    count("job", str(i))
    return i


@scheduled("* * * * * *", missed="latest")
@workflow()
def tick(scheduled_at: object, started_at: object) -> None:
    count("tick", str(scheduled_at))


@transaction()
def create_tables() -> None:
    eoflow.db().execute("CREATE TABLE IF NOT EXISTS counts (kind TEXT, key TEXT, n INTEGER, "
                        "PRIMARY KEY (kind, key))")


def main() -> None:
    with Engine(journal=sys.argv[1]) as engine:
        create_tables()
        if MODE == "sleep":
            engine.start(sleeper, workflow_id="sleeper").result(timeout=60)
        elif MODE == "messages":
            waiting = engine.start(receiver, workflow_id="receiver")
            engine.start(sender, workflow_id="sender").result(timeout=60)
            waiting.result(timeout=60)
        elif MODE == "queue":
            handles = []
            for i in range(20):
                with eoflow.set_workflow_id(f"job-{i}"):
                    handles.append(JOBS.enqueue(job, i))
            for handle in handles:
                handle.result(timeout=60)
        elif MODE == "schedule":
            engine.schedule(tick)
            time.sleep(float(os.environ.get("RUN_S", "3")))
    print("done", flush=True)


if __name__ == "__main__":
    main()
