"""The CLI through click's runner and through real `eoflow run` processes and signals."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from eoflow import Engine, Status, step, workflow
from eoflow.cli.main import cli
from eoflow.errors import WorkflowCancelledError
from eoflow.journal.reader import SQLiteReader

SLOW_APP = str(Path(__file__).parent / "apps" / "slow_app.py")


@step()
def cli_step(i: int) -> int:
    return i * 3


@workflow()
def cli_flow(i: int) -> int:
    return cli_step(i)


@workflow()
def cli_broken(i: int) -> int:
    raise RuntimeError(f"bad input {i}")


def eoflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eoflow.cli.main", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


GATE = threading.Event()
ENTERED = threading.Event()


@step()
def cli_wait_for_gate() -> int:
    ENTERED.set()
    GATE.wait(10)
    return 1


@step()
def cli_after_gate() -> int:
    return 2


@workflow()
def cli_gated() -> int:
    return cli_wait_for_gate() + cli_after_gate()


def test_cli_cancel_reaches_a_running_engine(journal_path: str) -> None:
    """The CLI writes the change and a request row; the running engine picks it up."""
    GATE.clear()
    ENTERED.clear()
    with Engine(journal=journal_path) as engine:
        handle = engine.start(cli_gated, workflow_id="gated")
        assert ENTERED.wait(10)
        result = CliRunner().invoke(cli, ["workflows", "cancel", "gated", "--journal",
                                          journal_path])
        assert result.exit_code == 0, result.output
        time.sleep(1.2)  # longer than the engine's request poll (0.5 s)
        GATE.set()
        with pytest.raises(WorkflowCancelledError):
            handle.result(timeout=10)
        assert [s.name for s in engine.journal.steps_of("gated")] == ["cli_wait_for_gate"]


def test_every_command_has_help() -> None:
    runner = CliRunner()
    commands = list(all_commands(cli))
    assert {" ".join(path) for path, _ in commands} >= {
        "run", "status", "workflows list", "workflows show", "workflows cancel",
        "workflows resume", "workflows fork", "broker", "produce", "quarantine list",
        "quarantine retry"}
    for path, command in commands:
        assert command.help and len(command.help) > 20, path
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_status_json_matches_the_journal(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        for i in range(3):
            engine.run(cli_flow, i, workflow_id=f"ok-{i}")
        with pytest.raises(RuntimeError):
            engine.run(cli_broken, 7, workflow_id="broken-7")
    result = CliRunner().invoke(cli, ["status", "--journal", journal_path, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["workflows"]["SUCCESS"] == 3 and report["workflows"]["ERROR"] == 1
    assert report["workflows"]["PENDING"] == 0 and set(report["workflows"]) == {
        s.value for s in Status}
    assert report["by_name"] == {"cli_flow": {"SUCCESS": 3}, "cli_broken": {"ERROR": 1}}
    failure = report["recent_failures"][0]
    assert failure["workflow_id"] == "broken-7"
    assert failure["error"] == {"type": "builtins.RuntimeError", "message": "bad input 7"}
    assert report["throughput"]["succeeded"] == 3
    human = CliRunner().invoke(cli, ["status", "--journal", journal_path])
    assert human.exit_code == 0 and "cli_flow" in human.output and "bad input 7" in human.output
    shown = CliRunner().invoke(cli, ["workflows", "show", "broken-7", "--journal", journal_path])
    assert shown.exit_code == 0 and "Traceback (most recent call last)" in shown.output
    assert 'raise RuntimeError(f"bad input {i}")' in shown.output  # the failing line


def test_workflows_list_show_cancel_resume_fork(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        engine.run(cli_flow, 5, workflow_id="w5")
    runner = CliRunner(env={"EOFLOW_JOURNAL": journal_path})
    listed = json.loads(runner.invoke(cli, ["workflows", "list", "--json"]).output)
    assert [row["workflow_id"] for row in listed] == ["w5"]
    shown = json.loads(runner.invoke(cli, ["workflows", "show", "w5", "--json"]).output)
    assert shown["inputs"] == {"args": [5], "kwargs": {}} and shown["output"] == 15
    assert [(s["step"], s["name"], s["attempts"], s["output"]) for s in shown["steps"]] == [
        (1, "cli_step", 1, 15)]
    human = runner.invoke(cli, ["workflows", "show", "w5"])
    assert "cli_step" in human.output
    forked = runner.invoke(cli, ["workflows", "fork", "w5", "--from-step", "1", "--new-id",
                                 "w5-again"])
    assert forked.exit_code == 0, forked.output
    cancelled = runner.invoke(cli, ["workflows", "cancel", "w5-again"])
    assert cancelled.exit_code == 0 and "cancelled w5-again" in cancelled.output
    assert runner.invoke(cli, ["workflows", "resume", "w5-again"]).exit_code == 0
    with Engine(journal=journal_path) as engine:  # the next engine runs the resumed fork
        assert engine.retrieve("w5-again").result(timeout=10) == 15
    again = runner.invoke(cli, ["workflows", "cancel", "w5"])
    assert again.exit_code == 1
    assert "cannot cancel workflow 'w5': its status is SUCCESS" in again.output


@pytest.mark.parametrize("args,message", [
    (["workflows", "show", "nope"], "no workflow with id 'nope'"),
    (["status", "--journal", "/no/such/file.db"], "does not exist"),
])
def test_errors_are_one_line(args: list[str], message: str, journal_path: str) -> None:
    Engine(journal=journal_path).close()
    done = eoflow(*args, env={"EOFLOW_JOURNAL": journal_path})
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_app_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import eoflow\n\ndef f(:\n    pass\n")
    done = eoflow("run", str(broken), "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 1 and "syntax error at" in done.stderr and ":3:" in done.stderr
    failing = tmp_path / "failing.py"
    failing.write_text("import eoflow\nraise RuntimeError('no config')\n")
    done = eoflow("run", str(failing), "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 1 and "RuntimeError: no config" in done.stderr
    assert "failing.py:2" in done.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    done = eoflow("run", str(empty), "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 1 and "declares no @workflow" in done.stderr
    done = eoflow("run", str(tmp_path / "missing.py"))
    assert done.returncode == 1 and "no such file" in done.stderr
    done = eoflow("run", "no_such_module_xyz")
    assert done.returncode == 1 and "no such module" in done.stderr
    done = eoflow("run", str(failing), "--workers", "0")
    assert done.returncode == 2 and "--workers" in done.stderr
    verbose = eoflow("run", str(failing), "-v", "--journal", str(tmp_path / "j.db"))
    assert "Traceback" in verbose.stderr


def test_verbose_is_a_shared_option_read_from_the_command_line_click_parsed(
        tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.db")
    runner = CliRunner()
    for args in (["workflows", "show", "x", "--journal", missing, "-v"],
                 ["-v", "workflows", "show", "x", "--journal", missing],
                 ["status", "--journal", missing, "--verbose"]):
        done = runner.invoke(cli, args, catch_exceptions=False)
        assert done.exit_code == 1 and "Traceback" in done.stderr, args
    quiet = runner.invoke(cli, ["status", "--journal", missing], catch_exceptions=False)
    assert quiet.exit_code == 1 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().count("\n") == 0  # one line
    env = runner.invoke(cli, ["status", "--journal", missing], env={"EOFLOW_VERBOSE": "1"},
                        catch_exceptions=False)
    assert "Traceback" in env.stderr


def test_run_refuses_a_journal_owned_by_another_engine(journal_path: str) -> None:
    with Engine(journal=journal_path):
        done = eoflow("run", SLOW_APP, "--journal", journal_path)
    assert done.returncode == 1 and "in use by another eoflow engine" in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_run_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("plain text " * 200)
    done = eoflow("run", SLOW_APP, "--journal", str(path))
    assert done.returncode == 1 and "not an eoflow journal" in done.stderr


def start_run(journal: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "eoflow.cli.main", "run", SLOW_APP, "--journal", journal],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def wait_for_steps(journal: str, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(journal):
            try:
                reader = SQLiteReader(journal)
            except Exception:
                time.sleep(0.1)
                continue
            try:
                if sum(len(reader.steps_of(f"slow-{i}")) for i in range(3)) >= at_least:
                    return
            finally:
                reader.close()
        time.sleep(0.1)
    raise AssertionError("the app made no progress")


def wait_for_runs(journal: str, pending: int, timeout: float = 60) -> None:
    """Until the app started `pending` runs (a first start in a fresh environment, which
    compiles every module, can take seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not created yet, or being written
            reader = SQLiteReader(journal)
            try:
                if reader.count_by_status().get("PENDING", 0) >= pending:
                    return
            finally:
                reader.close()
        time.sleep(0.1)
    raise AssertionError("the app started no runs")


def test_run_stops_gracefully_on_sigterm_and_resumes(tmp_path: Path) -> None:
    journal = str(tmp_path / "j.db")
    app = start_run(journal, {"SLOW_STEP_SECONDS": "0.4"})
    wait_for_steps(journal, 2)
    app.send_signal(signal.SIGTERM)
    _, stderr = app.communicate(timeout=30)
    assert app.returncode == 0, stderr
    assert "shutting down" in stderr and "engine closed" in stderr
    reader = SQLiteReader(journal)
    assert reader.count_by_status().get("PENDING") == 3  # left for the next start
    reader.close()
    app = start_run(journal, {"SLOW_STEP_SECONDS": "0.01"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reader = SQLiteReader(journal)
        done = reader.count_by_status().get("SUCCESS", 0)
        reader.close()
        if done == 3:
            break
        time.sleep(0.1)
    app.send_signal(signal.SIGINT)
    app.communicate(timeout=30)
    assert app.returncode == 0
    reader = SQLiteReader(journal)
    assert reader.count_by_status() == {"SUCCESS": 3}
    assert [s.step for s in reader.steps_of("slow-0")] == [1, 2, 3, 4]
    reader.close()


def test_second_interrupt_forces_exit(tmp_path: Path) -> None:
    journal = str(tmp_path / "j.db")
    app = start_run(journal, {"SLOW_STEP_SECONDS": "20", "EOFLOW_GRACE_PERIOD": "30"})
    wait_for_runs(journal, 3)  # its handlers are in place before it opens the journal
    time.sleep(0.5)
    app.send_signal(signal.SIGINT)
    time.sleep(0.5)
    started = time.monotonic()
    app.send_signal(signal.SIGINT)
    _, err = app.communicate(timeout=10)
    assert app.returncode == 130 and time.monotonic() - started < 5
    assert "second interrupt: exiting now" in err
    with Engine(journal=journal, recover=False) as engine:  # the journal is intact
        assert engine.journal.count_by_status() == {"PENDING": 3}


@workflow()
def cli_napper() -> str:
    import eoflow as api

    api.sleep(0.01)
    return "rested"


def test_show_renders_a_sleep_as_its_deadline(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        engine.run(cli_napper, workflow_id="nap")
    shown = json.loads(CliRunner().invoke(
        cli, ["workflows", "show", "nap", "--journal", journal_path, "--json"]).output)
    assert shown["steps"][0]["kind"] == "sleep"
    assert shown["steps"][0]["output"]["until"].endswith("+00:00")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_status_watch_refreshes_until_interrupted(journal_path: str) -> None:
    """In a terminal (a pty here): the live page, saying when it was refreshed."""
    import pty

    Engine(journal=journal_path).close()
    primary, secondary = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "eoflow.cli.main", "status", "--watch",
                           "--journal", journal_path], stdout=secondary, stderr=secondary,
                          env={**os.environ, "COLUMNS": "100", "TERM": "xterm"}) as watcher:
        os.close(secondary)
        chunks: list[bytes] = []

        def read(until: float, stop_at: bytes | None) -> None:
            while time.monotonic() < until:
                if not select.select([primary], [], [], 0.1)[0]:
                    continue
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the terminal closed with the process
                    return
                if not chunk:
                    return
                chunks.append(chunk)
                if stop_at is not None and stop_at in b"".join(chunks):
                    return

        # Interrupted once it has drawn a page (a first start in a fresh environment, which
        # compiles every module, can take seconds), then read to the end.
        read(time.monotonic() + 60, b"refreshed at")
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=30)
        read(time.monotonic() + 5, None)
    os.close(primary)
    output = b"".join(chunks).decode(errors="replace")
    assert watcher.returncode == 0
    assert "eoflow status" in output and "Throughput" in output and "refreshed at" in output


def test_list_filters_forgive_case_and_qualified_names(journal_path: str) -> None:
    with Engine(journal=journal_path) as engine:
        engine.run(cli_flow, 1, workflow_id="f1")
    runner = CliRunner(env={"EOFLOW_JOURNAL": journal_path})
    for args in (["--status", "success"], ["--status", "Success"], ["--name", "cli_flow"]):
        listed = runner.invoke(cli, ["workflows", "list", "--json", *args])
        assert listed.exit_code == 0, listed.output
        assert [row["workflow_id"] for row in json.loads(listed.output)] == ["f1"], args


def test_list_by_the_short_name_of_a_method_workflow(journal_path: str) -> None:
    from eoflow.journal.records import NewWorkflow

    with Engine(journal=journal_path, recover=False) as engine:
        engine.journal.create_workflows([NewWorkflow("m1", "Orders.handle", "{}", 1),
                                         NewWorkflow("m2", "OtherOrders_handle", "{}", 1)], 1)
    listed = CliRunner().invoke(cli, ["workflows", "list", "--json", "--name", "handle",
                                      "--journal", journal_path])
    assert [row["workflow_id"] for row in json.loads(listed.output)] == ["m1"]


def test_run_a_directory_or_a_failing_start_leaves_nothing_behind(tmp_path: Path) -> None:
    done = eoflow("run", str(tmp_path), "--journal", str(tmp_path / "j.db"))
    assert done.returncode == 1 and "is a directory" in done.stderr
    app = tmp_path / "bad_start.py"
    app.write_text(
        "import eoflow\n"
        "@eoflow.workflow()\n"
        "def flow() -> None: ...\n"
        "@eoflow.on_start\n"
        "def setup() -> None:\n"
        "    raise RuntimeError('no config')\n")
    journal = tmp_path / "fresh.db"
    done = eoflow("run", str(app), "--journal", str(journal))
    assert done.returncode == 1 and "no config" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("fresh")) == []
    existing = tmp_path / "kept.db"
    with Engine(journal=str(existing)):
        pass
    done = eoflow("run", str(app), "--journal", str(existing))
    assert done.returncode == 1 and existing.exists()  # a journal it did not create stays


def test_commands_that_act_on_a_journal_never_create_one(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    runner = CliRunner()
    for args in (["workflows", "cancel", "x"], ["workflows", "resume", "x"],
                 ["workflows", "fork", "x", "--from-step", "1"], ["quarantine", "retry", "k"],
                 ["status"], ["workflows", "list"]):
        done = runner.invoke(cli, [*args, "--journal", str(typo)])
        assert done.exit_code == 1 and "does not exist" in done.stderr, (args, done.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (a tmpfs remounted read-only; needs root, as in CI)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a filesystem here (not root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_status_reads_a_clean_journal_on_a_read_only_filesystem(read_only_folder: Path) -> None:
    journal = read_only_folder / "journal.db"
    with Engine(journal=str(journal)) as engine:
        engine.run(cli_flow, 2, workflow_id="ro-1")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_folder)], check=True)
    done = CliRunner().invoke(cli, ["status", "--journal", str(journal), "--json"])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.output)["workflows"]["SUCCESS"] == 1
    shown = CliRunner().invoke(cli, ["workflows", "show", "ro-1", "--journal", str(journal)])
    assert shown.exit_code == 0 and "cli_step" in shown.output
