"""The version of the app's code that every run records (engine/versions.py), on both
backends; the hash is the same in any process for the same code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import eoflow
from eoflow import Client, Engine, Queue, Status, step, workflow
from eoflow.cli.main import cli
from eoflow.engine.config import EngineConfig
from eoflow.engine.registry import REGISTRY
from eoflow.engine.versions import code_version
from eoflow.errors import ConfigError
from eoflow.journal import admin, views
from eoflow.journal.opening import open_reader

BACKENDS = ("sqlite", "postgres")

APP = '''
from eoflow import step, workflow

@step()
def charge(order: str) -> str:
    return "charged " + order

@workflow()
def checkout(order: str) -> str:
    return charge(order)
'''


@step()
def v_double(x: int) -> int:
    return 2 * x


@workflow()
def v_flow(x: int) -> int:
    return v_double(x)


def _version_of(app: Path) -> str:
    """The default version of `app`, computed by a fresh interpreter that loads it."""
    code = ("import sys; from eoflow.engine.apploader import load_app; "
            "from eoflow.engine.registry import REGISTRY; "
            "from eoflow.engine.versions import code_version; "
            "load_app(sys.argv[1]); print(code_version(REGISTRY.functions()))")
    done = subprocess.run([sys.executable, "-c", code, str(app)], capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_the_same_code_has_the_same_version_in_any_process(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "shop.py", tmp_path / "b" / "shop.py"
    for path in (first, second):  # the same code at another place
        path.parent.mkdir()
        path.write_text(APP)
    version = _version_of(first)
    assert len(version) == 12 and version == _version_of(second)
    second.write_text(APP.replace('"charged "', '"charged: "'))  # a step's body changed
    assert _version_of(second) != version
    second.write_text(APP + "\n# a comment outside the functions\n")
    assert _version_of(second) == version


def test_every_run_records_the_version_that_started_it(journal_path: str) -> None:
    with Engine(journal=journal_path, app_version="v1") as engine:
        assert engine.app_version == "v1"
        assert engine.run(v_flow, 1, workflow_id="one") == 2
    with Engine(journal=journal_path) as engine:  # by default, a hash of the code
        assert engine.app_version == code_version(REGISTRY.functions())
        engine.run(v_flow, 2, workflow_id="two")
        with Client(journal_path) as client:
            client.start("v_flow", 3, workflow_id="three")
            assert client.result("three", timeout=30) == 6
        hashed = engine.app_version
    reader = open_reader(journal_path)
    try:
        versions = {r["workflow_id"]: r["version"] for r in views.list_workflows(reader)}
        assert versions == {"one": "v1", "two": hashed, "three": None}
        assert [r["workflow_id"] for r in views.list_workflows(reader, version="v1")] == ["one"]
        assert reader.get_workflow("two").app_version == hashed  # type: ignore[union-attr]
        executors = views.status_report(reader, 5)["executors"]
        assert {e["version"] for e in executors} == {"v1", hashed}
    finally:
        reader.close()
    listed = CliRunner().invoke(cli, ["workflows", "list", "--journal", journal_path,
                                      "--version", "v1", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["workflow_id"] for r in json.loads(listed.output)] == ["one"]


def test_status_counts_live_runs_by_version(journal_path: str) -> None:
    with Engine(journal=journal_path, app_version="old") as engine:
        engine.queues.stop()  # keep the enqueued runs waiting
        queue = Queue("v_queue")
        for n in range(3):
            queue.enqueue(v_flow, n)
    reader = open_reader(journal_path)
    try:
        report = views.status_report(reader, 5)
    finally:
        reader.close()
    assert report["versions"] == [{"version": "old", "pending": 0, "enqueued": 3}]
    shown = CliRunner().invoke(cli, ["status", "--journal", journal_path])
    assert "Live runs by app version" in shown.output and "old" in shown.output
    refused = CliRunner().invoke(cli, ["workflows", "resume", "--journal", journal_path])
    assert refused.exit_code == 2 and "--any-version --version V" in refused.output
    moved = CliRunner().invoke(cli, ["workflows", "resume", "--any-version", "--version", "old",
                                     "--journal", journal_path])
    assert moved.exit_code == 0, moved.output
    assert "3 run(s) of version old may now run on any version" in moved.output
    reader = open_reader(journal_path)
    try:
        assert reader.live_runs_by_version() == [(None, 0, 3)]
    finally:
        reader.close()


def test_an_app_version_is_given_by_argument_or_environment() -> None:
    assert EngineConfig.resolve(env={"EOFLOW_APP_VERSION": "2026.12"}).app_version == "2026.12"
    assert EngineConfig.resolve(app_version="b", env={"EOFLOW_APP_VERSION": "a"}).app_version \
        == "b"
    assert EngineConfig.resolve(env={}).app_version is None
    with pytest.raises(ConfigError, match="app_version"):
        EngineConfig.resolve(app_version="x" * 101, env={})


def test_the_hash_covers_each_function_whatever_the_order_of_definition() -> None:
    functions = REGISTRY.functions()
    base = code_version(functions)
    assert code_version(list(reversed(functions))) == base
    assert code_version(functions[1:]) != base


def test_eoflow_run_records_the_version_it_is_given(tmp_path: Path) -> None:
    import os
    import time

    app = tmp_path / "shop.py"
    app.write_text(APP + textwrap.dedent('''
        import eoflow

        @eoflow.on_start
        def begin() -> None:
            checkout("o-1")
        '''))
    journal = str(tmp_path / "j.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "eoflow.cli.main", "run", str(app), "--journal", journal,
         "--app-version", "7.1"], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EOFLOW_APP_VERSION": "ignored: the option wins"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(journal):
                reader = open_reader(journal)
                try:
                    runs = views.list_workflows(reader)
                finally:
                    reader.close()
                if runs and runs[0]["status"] == "SUCCESS":
                    break
            time.sleep(0.2)
        assert [(r["name"], r["version"]) for r in runs] == [("checkout", "7.1")]
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert "(version 7.1) running" in errors


@workflow()
def v_waiter() -> str:
    return str(eoflow.recv(timeout=60))


def test_an_engine_runs_only_its_own_versions_runs_until_told(
        journal_path: str, caplog: pytest.LogCaptureFixture) -> None:
    import time

    queue = Queue("v_upgrade_queue")
    with Engine(journal=journal_path, app_version="v1", grace_period=0.2, lease=0.5) as old:
        old.start(v_waiter, workflow_id="waiting")
        time.sleep(0.3)  # waiting in recv: the shutdown leaves it PENDING
        old.queues.stop()  # this one stays ENQUEUED
        queue.enqueue(v_flow, 21)
    with Client(journal_path) as client:
        client.send("waiting", "hello")
    with Engine(journal=journal_path, app_version="v2") as new:
        assert "1 PENDING and 1 ENQUEUED run(s) of app version v1 are left waiting" \
            in caplog.text
        time.sleep(1.5)  # its claim loop has looked again meanwhile
        record = new.journal.get_workflow("waiting")
        assert record is not None and record.status is Status.PENDING
        assert record.executor_id != new.journal.executor_id  # not this engine's
        queued = [r for r in new.journal.list_workflows() if r.queue == "v_upgrade_queue"]
        assert [r.status for r in queued] == [Status.ENQUEUED]
        # The operator moves them: one run, then the rest of the version.
        admin.resume(journal_path, "waiting", any_version=True)
        assert new.retrieve("waiting").result(timeout=20) == "hello"
        assert admin.release_version(journal_path, "v1") == 1
        assert new.retrieve(queued[0].workflow_id).result(timeout=20) == 42


def test_each_engine_resumes_its_own_versions_runs(journal_path: str) -> None:
    import time

    for version in ("v1", "v2"):
        with Engine(journal=journal_path, app_version=version, grace_period=0.2,
                    lease=0.5) as engine:
            engine.start(v_waiter, workflow_id=f"of-{version}")
            time.sleep(0.3)  # waiting in recv: left PENDING at the shutdown
    with Client(journal_path) as client:
        for version in ("v1", "v2"):
            client.send(f"of-{version}", f"hello {version}")
    for version in ("v2", "v1"):
        with Engine(journal=journal_path, app_version=version, lease=0.5) as engine:
            assert engine.retrieve(f"of-{version}").result(timeout=20) == f"hello {version}"
            other = "v1" if version == "v2" else "v2"
            record = engine.journal.get_workflow(f"of-{other}")
            assert record is not None
            # v2's engine left v1's run; v1's engine finds v2's already finished.
            assert record.status is (Status.PENDING if version == "v2" else Status.SUCCESS)
