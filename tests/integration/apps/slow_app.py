"""An app for CLI signal tests: on start it launches workflows whose steps take a while."""

from __future__ import annotations

import os
import time

import eoflow
from eoflow import step, workflow

STEP_SECONDS = float(os.environ.get("SLOW_STEP_SECONDS", "0.3"))
RUNS = int(os.environ.get("SLOW_RUNS", "3"))


@step()
def slow_step(i: int, n: int) -> int:
    time.sleep(STEP_SECONDS)
    return i + n


@workflow()
def slow_flow(i: int) -> int:
    total = 0
    for n in range(4):
        total = slow_step(i, n)
    return total


@eoflow.on_start
def launch() -> None:
    engine = eoflow.Engine.current()
    for i in range(RUNS):
        engine.start(slow_flow, i, workflow_id=f"slow-{i}")
    eoflow.logger.info("launched %d workflows", RUNS)
