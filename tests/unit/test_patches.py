"""eoflow.patched() and deprecated_patch(): one version of a workflow's code serving runs
started before and after a change, across restarts (engine/patches.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import eoflow
from eoflow import Engine, Status, step, workflow
from eoflow.errors import ContextError

BACKENDS = ("sqlite", "postgres")
CODE = {"now": "old"}  # which version of pt_order's code is deployed


@step()
def pt_prepare(x: int) -> int:
    return x


@step()
def pt_charge(x: int) -> str:
    return f"v1:{x}"


@step()
def pt_charge_v2(x: int) -> str:
    return f"v2:{x}"


@workflow()
def pt_order(x: int) -> str:
    pt_prepare(x)
    eoflow.recv("go", timeout=60)  # before the patch point
    if CODE["now"] == "old":
        charged = pt_charge(x)
    elif CODE["now"] == "patched":
        charged = pt_charge_v2(x) if eoflow.patched("charge-v2") else pt_charge(x)
    elif CODE["now"] == "deprecated":
        eoflow.deprecated_patch("charge-v2")
        charged = pt_charge_v2(x)
    else:  # the patch removed altogether
        charged = pt_charge_v2(x)
    eoflow.recv("done", timeout=60)  # after it
    return charged


def _engine(journal: str) -> Engine:
    # One version for every deploy below: with patches, the patches decide, not a code hash.
    return Engine(journal=journal, app_version="orders", grace_period=0.2, lease=0.5)


def _wait_steps(engine: Engine, wid: str, count: int) -> None:
    import time
    deadline = time.monotonic() + 20
    while len(engine.journal.steps_of(wid)) < count:
        assert time.monotonic() < deadline, engine.journal.steps_of(wid)
        time.sleep(0.02)


def test_a_patch_serves_runs_from_before_and_after_the_change(journal_path: str) -> None:
    CODE["now"] = "old"
    with _engine(journal_path) as engine:
        engine.start(pt_order, 1, workflow_id="before")  # stops before the patch point
        engine.start(pt_order, 2, workflow_id="passed")  # passes it under the old code
        eoflow.send("passed", "go", topic="go")
        _wait_steps(engine, "passed", 4)  # prepare, recv go (a deadline and a message), charge
    CODE["now"] = "patched"  # deployed: both runs are PENDING, resumed by the new code
    with _engine(journal_path) as engine:
        engine.start(pt_order, 3, workflow_id="new")
        for wid in ("before", "new"):
            eoflow.send(wid, "go", topic="go")
        _wait_steps(engine, "new", 5)  # prepare, recv (2 steps), patch marker, charge
        for wid in ("before", "passed", "new"):
            eoflow.send(wid, "done", topic="done")
        assert engine.retrieve("passed").result(timeout=20) == "v1:2"  # its history decides
        assert engine.retrieve("before").result(timeout=20) == "v2:1"  # reached it now
        assert engine.retrieve("new").result(timeout=20) == "v2:3"
        kinds = [s.kind.value for s in engine.journal.steps_of("new")]
        assert [k for k in kinds if k in ("step", "patch")] == ["step", "patch", "step"]
        assert "patch" not in [s.kind.value for s in engine.journal.steps_of("passed")]
        engine.start(pt_order, 4, workflow_id="marked")  # will meet the deprecated code
        engine.start(pt_order, 5, workflow_id="too-early")  # will meet the patch removed
        for wid in ("marked", "too-early"):
            eoflow.send(wid, "go", topic="go")
            _wait_steps(engine, wid, 5)
    CODE["now"] = "deprecated"
    with _engine(journal_path) as engine:
        engine.start(pt_order, 6, workflow_id="fresh")
        eoflow.send("fresh", "go", topic="go")
        for wid in ("marked", "fresh"):
            eoflow.send(wid, "done", topic="done")
        assert engine.retrieve("marked").result(timeout=20) == "v2:4"  # took its marker
        assert engine.retrieve("fresh").result(timeout=20) == "v2:6"
        assert "patch" not in [s.kind.value for s in engine.journal.steps_of("fresh")]
        engine.close()  # "too-early" waits for its message meanwhile
    CODE["now"] = "removed"  # too early: "too-early" recorded the marker
    with _engine(journal_path) as engine:
        eoflow.send("too-early", "done", topic="done")
        with pytest.raises(Exception, match="look at patch 'charge-v2'"):
            engine.retrieve("too-early").result(timeout=20)
        record = engine.journal.get_workflow("too-early")
        assert record is not None and record.status is Status.ERROR
    CODE["now"] = "old"


def test_a_patch_belongs_in_a_workflows_own_code() -> None:
    with pytest.raises(ContextError, match="inside a @workflow"):
        eoflow.patched("x")


def test_eoflow_run_warns_when_patches_meet_a_hashed_version(tmp_path: Path) -> None:
    app = tmp_path / "shop.py"
    app.write_text(textwrap.dedent('''
        import eoflow

        @eoflow.workflow()
        def checkout(order: str) -> str:
            return "v2" if eoflow.patched("charge-v2") else "v1"
        '''))
    for extra, warned in (([], True), (["--app-version", "shop-1"], False)):
        process = subprocess.Popen(
            [sys.executable, "-m", "eoflow.cli.main", "run", str(app), "--journal",
             str(tmp_path / "j.db"), *extra], stderr=subprocess.PIPE, text=True)
        lines = []
        try:
            assert process.stderr is not None
            for line in process.stderr:  # up to the line that says it runs
                lines.append(line)
                if "running:" in line:
                    break
        finally:
            process.terminate()
            process.communicate(timeout=30)  # and closes its pipe
        assert any("running:" in line for line in lines), lines
        assert any("uses eoflow.patched()" in line for line in lines) is warned, lines
