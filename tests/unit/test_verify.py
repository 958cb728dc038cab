"""`eoflow verify`: recorded runs replayed against changed code, offline (engine/verify.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import eoflow
from eoflow import Engine, Queue, step, transaction, workflow
from eoflow.engine import verify
from eoflow.journal.opening import open_reader
from eoflow.testing import isolated_definitions

BACKENDS = ("sqlite", "postgres")
CODE = {"now": "old"}
CALLS: list[str] = []  # every step and transaction body that ran
LATER = Queue("vf_later")


@step()
def vf_prepare(x: int) -> int:
    CALLS.append("prepare")
    return x


@step()
def vf_charge(x: int) -> str:
    CALLS.append("charge")
    return f"v1:{x}"


@step()
def vf_charge_v2(x: int) -> str:
    CALLS.append("charge_v2")
    return f"v2:{x}"


@transaction()
def vf_record(x: int) -> int:
    CALLS.append("record")
    return x


@workflow()
def vf_child(x: int) -> int:
    return vf_prepare(x)


@workflow()
def vf_order(x: int) -> str:
    """Every durable primitive before the change point, then the part that changes."""
    vf_prepare(x)
    eoflow.sleep(0.01)
    eoflow.set_event("stage", "prepared")
    vf_child(x)
    LATER.enqueue(vf_child, x + 100)
    eoflow.send(eoflow.workflow_id(), "note", topic="self")
    eoflow.recv("self", timeout=10)
    eoflow.recv("go", timeout=60)
    if CODE["now"] == "old":
        charged = vf_charge(x)
    elif CODE["now"] == "patched":
        charged = vf_charge_v2(x) if eoflow.patched("charge-v2") else vf_charge(x)
    else:  # changed without a patch: a divergence for runs that passed this point
        charged = vf_charge_v2(x)
    vf_record(x)
    return charged


def _check(journal: str) -> dict[str, object]:
    reader = open_reader(journal)
    try:
        runs = verify.candidates(reader, verify.LIVE, 0, None)
        return verify.verify(reader, runs).as_dict()
    finally:
        reader.close()


def test_verify_replays_every_primitive_and_finds_the_changed_step(journal_path: str) -> None:
    CODE["now"] = "old"
    with Engine(journal=journal_path, grace_period=0.2, lease=0.5) as engine:
        finished = engine.start(vf_order, 1, workflow_id="finished")
        eoflow.send("finished", "go", topic="go")
        assert finished.result(timeout=30) == "v1:1"
        engine.start(vf_order, 2, workflow_id="waiting")  # stops at recv("go")
        deadline = time.monotonic() + 20
        while len(engine.journal.steps_of("waiting")) < 9:  # up to the deadline of recv("go")
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _check(journal_path)["divergences"] == []  # beside the running engine
    CALLS.clear()
    report = _check(journal_path)
    # The two orders, their children and the enqueued ones: every run of the journal.
    assert report["checked"] == 6 and report["divergences"] == [], report
    assert report["partial"] == []  # every primitive replayed without a live engine
    CODE["now"] = "patched"
    assert _check(journal_path)["divergences"] == []
    CODE["now"] = "changed"
    report = _check(journal_path)
    assert [(d["workflow_id"], d["step"], d["recorded"], d["called"], d["patch"])
            for d in report["divergences"]] == [  # type: ignore[union-attr]
        ("finished", 11, "vf_charge", "vf_charge_v2", None)]
    assert CALLS == []  # nothing ran
    CODE["now"] = "old"


APP = '''
import eoflow

@eoflow.step()
def charge(order: str) -> str:
    return "charged " + order

@eoflow.step()
def charge_with_tax(order: str) -> str:
    return "charged with tax " + order

@eoflow.workflow()
def checkout(order: str) -> str:
    return {body}
'''


def test_the_cli_exits_1_naming_the_run_and_step(tmp_path: Path) -> None:
    journal = str(tmp_path / "prod.db")
    with isolated_definitions():
        @step(name="charge")
        def charge(order: str) -> str:
            return "charged " + order

        @workflow(name="checkout")
        def checkout(order: str) -> str:
            return charge(order)

        with Engine(journal=journal) as engine:
            assert engine.run(checkout, "o-1", workflow_id="o-1") == "charged o-1"
    app = tmp_path / "app.py"

    def run_verify(body: str) -> subprocess.CompletedProcess[str]:
        app.write_text(APP.format(body=body))
        return subprocess.run(
            [sys.executable, "-m", "eoflow.cli.main", "verify", str(app), "--journal", journal,
             "--status", "SUCCESS", "--json"], capture_output=True, text=True, timeout=60)

    same = run_verify("charge(order)")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["checked"] == 1
    changed = run_verify("charge_with_tax(order)")
    assert changed.returncode == 1, changed.stderr
    found = json.loads(changed.stdout)["divergences"]
    assert [(d["workflow_id"], d["step"], d["recorded"], d["called"]) for d in found] == [
        ("o-1", 1, "charge", "charge_with_tax")]
    patched = run_verify(textwrap.dedent('''\
        (charge_with_tax(order) if eoflow.patched("tax") else charge(order))'''))
    assert patched.returncode == 0, patched.stdout
