"""The README's upgrade, for real (examples/upgrade): shop_v1.py runs under `eoflow run` with
checkouts in flight and is killed with SIGKILL in the middle of them; `eoflow verify` passes
shop_v2.py (the change under `eoflow.patched`) and fails a version of it without the patch;
shop_v2.py then finishes the old runs as they ran and charges the new ones with tax, each
order charged once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from eoflow import Client, Status
from tests.portable import journal_sql

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "examples" / "upgrade" / "shop_v1.py"
V2 = ROOT / "examples" / "upgrade" / "shop_v2.py"


def eoflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "eoflow.cli.main", *args]


def start(app: Path, journal: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(eoflow("run", str(app), "--journal", journal,
                                          "--app-version", "shop"),
                                   stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 30
    while b"running:" not in log.read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return process


def statuses(client: Client, orders: list[str]) -> list[Status]:
    return [client.status(order) for order in orders]


def wait_for(check: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_upgrade_with_a_patch_across_a_kill(tmp_path: Path) -> None:
    journal = str(tmp_path / "shop.db")
    old = start(V1, journal, tmp_path / "v1.log")
    with Client(journal) as client:
        orders = [f"o-{n}" for n in range(1, 7)]
        for order in orders[:5]:
            client.start("checkout", order, workflow_id=order)
        for order in orders[:2]:  # paid and charged under v1
            client.send(order, "card", topic="paid")
        wait_for(lambda: statuses(client, orders[:2]) == [Status.SUCCESS] * 2)
        wait_for(lambda: len(journal_sql(journal, "SELECT 1 FROM eoflow_steps WHERE "
                                         "workflow_id = 'o-5' AND kind = 'sleep'")) == 1)
        client.send("o-3", "card", topic="paid")  # and the process dies around its charge
        time.sleep(0.05)
        os.kill(old.pid, signal.SIGKILL)
        old.wait()
    # Before the deploy: the patched code replays every run; the naive change does not.
    checked = subprocess.run(eoflow("verify", str(V2), "--journal", journal, "--status",
                                    "SUCCESS", "--status", "PENDING"),
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    naive = tmp_path / "shop_naive.py"
    naive.write_text(V2.read_text().replace(
        'if eoflow.patched("tax"):', 'if True:'))
    refused = subprocess.run(eoflow("verify", str(naive), "--journal", journal, "--status",
                                    "SUCCESS"), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "recorded as 'charge' but the code now calls 'charge_with_tax'" in refused.stdout
    assert "step 4 was recorded as 'charge'" in refused.stdout  # the charge, after recv
    new = start(V2, journal, tmp_path / "v2.log")
    try:
        with Client(journal) as client:
            client.start("checkout", "o-6", workflow_id="o-6")
            for order in ("o-4", "o-5", "o-6"):
                client.send(order, "card", topic="paid")
            results = {order: client.result(order, timeout=30) for order in orders}
    finally:
        new.send_signal(signal.SIGTERM)
        new.wait(timeout=30)
    charges = dict(journal_sql(journal, "SELECT order_id, how FROM charges"))
    assert sorted(charges) == orders  # each order charged once (its primary key)
    for order in orders:
        assert results[order] == f"{order} charged {charges[order]}"
    assert [charges[o] for o in ("o-1", "o-2")] == ["plain", "plain"]  # replayed as they ran
    assert [charges[o] for o in ("o-4", "o-5", "o-6")] == ["with tax"] * 3
