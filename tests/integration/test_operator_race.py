"""Operator actions racing the app: cancel, resume and fork, from the CLI and the library, at
random moments while runs execute. Whatever the order, each run ends in the state the last
action asked for, and the journal and the engine's memory agree: nothing is left PENDING."""

from __future__ import annotations

import os
import random
import time

import pytest

from eoflow import Engine, Status, step, workflow
from eoflow.errors import WorkflowStateError
from eoflow.journal import admin


@step()
def race_tick(i: int) -> int:
    time.sleep(0.02)  # long enough that actions often land while a step runs
    return i


@workflow()
def race_flow(n: int) -> int:
    return sum(race_tick(i) for i in range(n))


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("EOFLOW_RACE_SEEDS",
                                                                 "7,2026").split(",")])
def test_random_cancel_resume_fork_from_both_sides(journal_path: str, seed: int) -> None:
    rng = random.Random(seed)
    with Engine(journal=journal_path, workers=8, grace_period=10) as engine:
        ids = [engine.start(race_flow, 30, workflow_id=f"r{i}").workflow_id for i in range(20)]
        forks: list[str] = []
        last: dict[str, str] = {}
        for step_number in range(150):
            wid = rng.choice(ids)
            action, cli = rng.choice(["cancel", "resume", "fork", "flip"]), rng.random() < 0.5
            try:
                if action == "flip":  # cancel, then resume at once: before the next boundary
                    (admin.cancel if cli else lambda p, w: engine.cancel(w))(journal_path, wid)
                    if rng.random() < 0.5:
                        time.sleep(0.03)  # let the app see the cancel first, sometimes
                    (admin.resume if rng.random() < 0.5 else lambda p, w: engine.resume(w))(
                        journal_path, wid)
                    last[wid] = "resume"
                    continue
                if action == "fork":
                    new_id = f"{wid}-f{step_number}"
                    if cli:
                        admin.fork(journal_path, wid, rng.randint(1, 5), new_id)
                    else:
                        engine.fork(wid, rng.randint(1, 5), new_id)
                    forks.append(new_id)
                    continue
                if cli:
                    getattr(admin, action)(journal_path, wid)
                else:
                    getattr(engine, action)(wid)
                last[wid] = action
            except WorkflowStateError:
                pass  # e.g. cancelling a finished run: refused, nothing changed
            time.sleep(rng.uniform(0, 0.01))
        time.sleep(1.5)  # the app has acted on every CLI request (it polls every 0.5 s)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = {r.workflow_id: r.status for r in engine.journal.list_workflows(limit=500)}
            if Status.PENDING not in statuses.values():
                break
            time.sleep(0.1)
        stuck = {w: (engine.runtime.runs.get(w), getattr(engine.runtime.runs.get(w), "claimed",
                                                          None))
                 for w, st in statuses.items() if st is Status.PENDING}
        assert not stuck, (stuck, [(w, last.get(w)) for w in stuck])
        for wid in ids:
            memory = engine.runtime.runs.get(wid)
            assert memory is None, f"{wid} is still held in memory while the journal says done"
            if last.get(wid) == "cancel":
                assert statuses[wid] is Status.CANCELLED, (wid, statuses[wid])
            elif last.get(wid) == "resume":
                assert statuses[wid] is Status.SUCCESS, (wid, statuses[wid])
        for wid in forks:
            assert statuses[wid] in (Status.SUCCESS, Status.CANCELLED)
        # Everything cancelled can still be resumed to completion.
        for wid, status in statuses.items():
            if status is Status.CANCELLED:
                assert engine.resume(wid).result(timeout=30) == sum(range(30))
