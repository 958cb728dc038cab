"""The queue-limit test's app: a queue of concurrency 2 whose runs note when their one step
ran (start and end, in ns, this host's clock) in the file named by QUEUE_LOG.

    eoflow run queue_app.py --journal URL
"""

from __future__ import annotations

import os
import time

import eoflow
from eoflow import step, workflow

LIMITED = eoflow.Queue("limited", concurrency=2)


@step()
def occupy(i: int) -> int:
    began = time.time_ns()
    time.sleep(0.15)
    fd = os.open(os.environ["QUEUE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i} {os.getpid()} {began} {time.time_ns()}\n".encode())
    finally:
        os.close(fd)
    return i


@workflow()
def slot(i: int) -> int:
    return occupy(i)
