"""eoflow.Client and the CLI's `workflows start` / `send`: work started beside a running engine,
without one, on both backends."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

import eoflow
from eoflow import Client, Engine, Queue, step, workflow
from eoflow.cli.main import cli
from eoflow.errors import AwaitTimeoutError, WorkflowConflictError, WorkflowNotFoundError

BACKENDS = ("sqlite", "postgres")
CLIENT_QUEUE = Queue("client-queue", concurrency=1)


@step()
def client_double(x: int) -> int:
    return x * 2


@workflow()
def client_flow(x: int, plus: int = 0) -> int:
    return client_double(x) + plus


@workflow()
def client_waiter() -> str:
    eoflow.set_event("ready", True)
    message = eoflow.recv(timeout=30)
    eoflow.set_event("got", message)
    return f"got {message}"


def test_a_client_starts_work_that_a_running_engine_picks_up(journal_path: str) -> None:
    with Engine(journal=journal_path), Client(journal_path) as client:
        began = time.monotonic()
        wid = client.start("client_flow", 5, plus=1)
        assert client.result(wid, timeout=10) == 11
        picked_up = time.monotonic() - began
        assert picked_up < 3.0, picked_up  # the README's bound: within a second or so
        assert client.status(wid) is eoflow.Status.SUCCESS
        assert client.start("client_flow", 5, plus=1, workflow_id=wid) == wid  # changes nothing
        with pytest.raises(WorkflowConflictError, match="belongs to a run of 'client_flow'"):
            client.start("client_waiter", workflow_id=wid)
        queued = client.enqueue("client-queue", "client_flow", 2)
        assert client.result(queued, timeout=10) == 4

        waiter = client.start("client_waiter")
        assert client.get_event(waiter, "ready", timeout=10) is True
        client.send(waiter, {"n": 7})
        assert client.result(waiter, timeout=10) == "got {'n': 7}"
        assert client.get_event(waiter, "got") == {"n": 7}

        slow = client.start("client_waiter")
        assert client.get_event(slow, "ready", timeout=10) is True
        with pytest.raises(AwaitTimeoutError):
            client.result(slow, timeout=0.2)
        client.cancel(slow)
        deadline = time.monotonic() + 10
        while client.status(slow) is not eoflow.Status.CANCELLED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.status(slow) is eoflow.Status.CANCELLED
        with pytest.raises(WorkflowNotFoundError):
            client.send("no-such-run", 1)


def test_a_run_started_while_no_engine_runs_waits_for_one(journal_path: str) -> None:
    Engine(journal=journal_path).close()  # the journal exists; no engine runs now
    runner = CliRunner(env={"EOFLOW_JOURNAL": journal_path})
    with Client(journal_path) as client:
        wid = client.start("client_flow", 3)
        assert client.status(wid) is eoflow.Status.PENDING
    listed = json.loads(runner.invoke(cli, ["workflows", "list", "--json"]).output)
    assert [(r["workflow_id"], r["executor"]) for r in listed] == [(wid, None)]  # no one's yet
    with Engine(journal=journal_path) as engine:  # its start claims it
        shown = json.loads(runner.invoke(cli, ["workflows", "show", wid, "--json"]).output)
        assert shown["executor"] in (engine.journal.executor_id, None)  # None once finished
        assert engine.retrieve(wid).result(timeout=10) == 6


def test_the_cli_starts_a_run_and_sends_it_a_message(journal_path: str) -> None:
    runner = CliRunner(env={"EOFLOW_JOURNAL": journal_path})
    with Engine(journal=journal_path), Client(journal_path) as client:
        started = runner.invoke(cli, ["workflows", "start", "client_flow", "--input", "[4]",
                                      "--id", "from-cli"])
        assert started.exit_code == 0 and "started from-cli" in started.output, started.output
        assert client.result("from-cli", timeout=10) == 8
        named = runner.invoke(cli, ["workflows", "start", "client_flow", "--input",
                                    json.dumps({"x": 1, "plus": 2})])
        assert named.exit_code == 0, named.output
        assert client.result(named.output.split()[-1], timeout=10) == 4
        waiter = client.start("client_waiter")
        assert client.get_event(waiter, "ready", timeout=10) is True
        sent = runner.invoke(cli, ["send", waiter, '"hello"'])
        assert sent.exit_code == 0, sent.output
        assert client.result(waiter, timeout=10) == "got hello"
        bad = runner.invoke(cli, ["send", waiter, "not json"])
        assert bad.exit_code == 2 and "not JSON" in bad.output
