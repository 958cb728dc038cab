"""One engine process of many_engines.py: it runs the realistic workflow (parse in a step,
insert a row in a @transaction) on a shared journal, in one of three modes.

    kafka   consume --topic through the workflow path until stdin closes
    starts  wait for a line on stdin, start_many --count runs (in chunks of 500), await them
    hold    start_many --count runs whose step blocks, print "held", then wait to be killed
    serve   run only the engine (recovery takes over other executors' runs, and it picks up
            the runs a client starts) until stdin closes

--share-sqlite lets several processes open one SQLite file (a shared lock instead of the
owner lock, and the multi-engine rules of PostgreSQL): an experiment to decide whether
SQLite should allow it, not a supported mode. The driver reads every figure from the journal.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eoflow  # noqa: E402
from eoflow import Engine, KafkaMessage, kafka_consume, step, transaction, workflow  # noqa: E402

HOLD = os.environ.get("SCALE_HOLD") == "1"
MARK = "%s" if os.environ.get("SCALE_JOURNAL", "").startswith("postgres") else "?"


@step()
def scale_parse(value: str) -> str:
    while HOLD:  # the recovery benchmark's first engine: its runs stay PENDING until killed
        time.sleep(1)
    return str(json.loads(value)["id"])


@transaction()
def scale_record(order_id: str) -> None:
    eoflow.db().execute(f"INSERT INTO applied VALUES ({MARK})", (order_id,))


@workflow()
def scale_order(value: str) -> None:
    scale_record(scale_parse(value))


@step()
def scale_echo_step(value: str) -> str:
    return value


@workflow()
def scale_echo(value: str) -> str:
    """Started by a client in the latency benchmark: how soon an engine picks it up."""
    return scale_echo_step(value)


@workflow()
def scale_wait() -> str:
    """Waits for a client's message in the latency benchmark."""
    return str(eoflow.recv(timeout=60))


def share_sqlite() -> None:
    """Let several processes open one SQLite journal: the experiment (see above)."""
    from eoflow.journal import connection, sqljournal

    def acquire_shared(self: connection.OwnerLock) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._fd = fd

    connection.OwnerLock.acquire = acquire_shared  # type: ignore[method-assign]
    sqljournal.SqlJournal.exclusive = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["kafka", "starts", "hold", "serve"])
    parser.add_argument("--journal", required=True)
    parser.add_argument("--brokers")
    parser.add_argument("--topic")
    parser.add_argument("--ordered", default="partition", choices=["partition", "none"])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--lease", default="10s")
    parser.add_argument("--share-sqlite", action="store_true")
    args = parser.parse_args()
    if args.share_sqlite:
        share_sqlite()
    with Engine(journal=args.journal, lease=args.lease) as engine:
        if args.mode == "kafka":
            @kafka_consume(args.topic, group_id=f"scale-{args.topic}",
                           ordered=args.ordered == "partition")
            @workflow()
            def scale_message(topic: str, partition: int, message: KafkaMessage) -> None:
                scale_record(scale_parse((message.value or b"{}").decode()))
            engine.consume(scale_message, brokers=args.brokers)
        print("ready", flush=True)
        if args.mode == "starts":
            sys.stdin.readline()
            tag = f"{os.getpid()}"
            handles = []
            for first in range(0, args.count, 500):
                calls = [(json.dumps({"id": f"{tag}-{n}"}),)
                         for n in range(first, min(first + 500, args.count))]
                handles += engine.start_many(scale_order, calls)
            for handle in handles:
                handle.result(timeout=600)
            print("done", flush=True)
        elif args.mode == "hold":
            engine.start_many(scale_order, [(json.dumps({"id": f"held-{n}"}),)
                                            for n in range(args.count)])
            print("held", flush=True)
            time.sleep(3600)
        sys.stdin.read()  # until the driver closes it


if __name__ == "__main__":
    main()
