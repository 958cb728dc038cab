"""`eoflow run --metrics-port`: the engine's OpenTelemetry metrics, scraped in Prometheus'
text format from a real `eoflow run` process."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

APP = Path(__file__).parent / "apps" / "metered_app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def value(text: str, metric: str, missing: float | None = None, **labels: str) -> float:
    """The sum of `metric`'s samples whose labels include `labels` (`missing` if none, when
    given; else none is a failure)."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(rf"{metric}(?:{{(.*)}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total, found = total + float(match.group(2)), True
    if not found and missing is not None:
        return missing
    assert found, f"no {metric} {labels} in:\n{text}"
    return total


def test_metrics_are_served_in_prometheus_format(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "eoflow.cli.main", "run", str(APP), "--journal",
             str(tmp_path / "j.db"), "--metrics-port", str(port)], stderr=sink)
    try:
        deadline, text = time.monotonic() + 30, ""
        while 'status="ERROR"' not in text or value(
                text, "eoflow_runs_finished_total", 0, status="SUCCESS") < 8:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=5).read().decode()
            except OSError:
                continue
        assert value(text, "eoflow_runs_started_total", workflow="me_flow") == 9
        assert value(text, "eoflow_runs_finished_total", workflow="me_flow",
                     status="SUCCESS") == 8
        assert value(text, "eoflow_runs_finished_total", workflow="me_broken",
                     status="ERROR") == 1
        assert value(text, "eoflow_step_duration_seconds_count", kind="step") == 8
        assert value(text, "eoflow_step_duration_seconds_count", kind="transaction") == 8
        assert value(text, "eoflow_step_retries_total", workflow_step="me_step") == 1
        assert value(text, "eoflow_journal_commit_duration_seconds_count") >= 1
        assert value(text, "eoflow_journal_batch_size_count") >= 1
        assert value(text, "eoflow_queue_wait_seconds_count", queue="mq") == 3
        assert value(text, "eoflow_queue_depth", queue="mq_later") == 1
        assert f'journal="{tmp_path / "j.db"}"' in text  # one series per journal
        assert f"metrics: http://0.0.0.0:{port}/metrics" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "eoflow.cli.main", "run", str(APP), "--journal",
             str(tmp_path / "j.db"), "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"eoflow: error: --metrics-port: cannot listen on port {port}")


def test_without_the_exporter_the_error_names_the_extra(tmp_path: Path) -> None:
    program = ("import sys; sys.modules['prometheus_client'] = None  # as if not installed\n"
               "from eoflow.cli.main import main; main()")
    result = subprocess.run(
        [sys.executable, "-c", program, "run", str(APP), "--journal", str(tmp_path / "j.db"),
         "--metrics-port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "eoflow: error: --metrics-port: prometheus_client not installed; run: "
        "pip install 'eoflow[prometheus]'")
