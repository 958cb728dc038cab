"""OpenTelemetry traces of real processes (the app configures the SDK, as a user's does): one
trace per run across a kill -9 and the recovery that follows, no second span for a replayed
step, a retry as an event of its step, a child under its parent, the app's spans nested."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

APP = Path(__file__).parent / "apps" / "traced_app.py"


def spans_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_run_keeps_one_trace_across_a_kill_and_its_recovery(tmp_path: Path) -> None:
    journal, spans_file, go = tmp_path / "j.db", tmp_path / "spans.jsonl", tmp_path / "go"
    env = dict(os.environ, SPANS=str(spans_file), GO=str(go))
    first = subprocess.Popen([sys.executable, str(APP), str(journal), "start"], env=env)
    deadline = time.monotonic() + 30
    while not any(s["name"] == "app work" for s in spans_of(spans_file)):  # in tr_wait now
        assert first.poll() is None and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    go.touch()
    second = subprocess.run([sys.executable, str(APP), str(journal), "finish"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "went:10"

    spans = spans_of(spans_file)
    by_id = {s["span"]: s for s in spans}
    names = Counter(s["name"] for s in spans)
    request = next(s for s in spans if s["name"] == "request")
    assert {s["trace"] for s in spans} == {request["trace"]}, "one trace for everything"
    start = next(s for s in spans if s["name"] == "eoflow.start tr_order")
    assert start["parent"] == request["span"] and names["eoflow.start tr_order"] == 1
    assert start["attributes"]["eoflow.workflow.id"] == "order-1"
    # The killed execution never ended its span; the recovered one is under the same start.
    runs = [s for s in spans if s["name"] == "workflow tr_order"]
    assert len(runs) == 1 and runs[0]["parent"] == start["span"]
    assert runs[0]["pid"] != first.pid
    assert runs[0]["attributes"]["eoflow.replayed_steps"] == 1
    assert runs[0]["attributes"]["eoflow.outcome"] == "SUCCESS"
    # tr_parse ran once (in the first process), failing once: one span, one retry event.
    parse = [s for s in spans if s["name"] == "step tr_parse"]
    assert len(parse) == 1 and parse[0]["pid"] == first.pid
    assert parse[0]["attributes"]["eoflow.step.attempts"] == 2
    assert parse[0]["events"] == ["eoflow.retry"]
    # tr_wait started in the first process (killed: no span) and ran again in the second.
    wait = [s for s in spans if s["name"] == "step tr_wait"]
    assert len(wait) == 1 and wait[0]["parent"] == runs[0]["span"]
    assert wait[0]["attributes"]["eoflow.step.number"] == 2
    work = [s for s in spans if s["name"] == "app work"]
    assert len(work) == 2 and by_id[work[1]["parent"]]["name"] == "step tr_wait"
    # The child: its start under the parent's execution, its execution under its start.
    child_start = next(s for s in spans if s["name"] == "eoflow.start tr_child")
    assert child_start["parent"] == runs[0]["span"]
    child = next(s for s in spans if s["name"] == "workflow tr_child")
    assert child["parent"] == child_start["span"]
    save = next(s for s in spans if s["name"] == "transaction tr_save")
    assert save["parent"] == child["span"] and save["attributes"]["eoflow.outcome"] == "SUCCESS"

    # The same run rebuilt from the journal alone: one trace, the live trace's id.
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eoflow.cli.main", "journal", "trace",
                               "order-1", "--journal", str(journal), *args],
                              capture_output=True, text=True, timeout=60)

    rebuilt = json.loads(cli("--json").stdout)
    assert [(s["name"], s["depth"]) for s in rebuilt] == [
        ("workflow tr_order", 0), ("step tr_parse", 1), ("step tr_wait", 1),
        ("child tr_child", 1), ("workflow tr_child", 2), ("transaction tr_save", 3)]
    assert {s["trace_id"] for s in rebuilt} == {request["trace"]}
    assert rebuilt[0]["parent_id"] == start["span"]  # under the live start span
    assert rebuilt[4]["parent_id"] == rebuilt[3]["span_id"]
    assert rebuilt[1]["attributes"]["eoflow.step.attempts"] == 2
    exported = json.loads(cli("--otlp").stdout)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["spanId"] for s in exported] == [s["span_id"] for s in rebuilt]
    assert exported[5]["parentSpanId"] == exported[4]["spanId"]
    timeline = cli().stdout.splitlines()
    assert timeline[0].startswith(f"trace {request['trace']}")
    assert "2 attempts" in timeline[2] and timeline[2].lstrip().startswith("step tr_parse")


NOTHING_IMPORTED = """
import sys
{block}
from eoflow import Engine, step, workflow

@step()
def ni_step(n: int) -> int:
    return n + 1

@workflow()
def ni_flow(n: int) -> int:
    return ni_step(n)

with Engine(sys.argv[1]) as engine:
    assert engine.start(ni_flow, 1).result(timeout=30) == 2
    assert engine.runtime.telemetry is None
loaded = sorted(m for m, v in sys.modules.items()
                if v is not None and m.startswith(("opentelemetry", "prometheus")))
assert not loaded, loaded
print("ok")
"""


def test_without_the_api_or_switched_off_nothing_imports_opentelemetry(tmp_path: Path) -> None:
    for name, block, env in (
            ("absent", 'sys.modules["opentelemetry"] = None  # as if not installed', {}),
            ("off", "", {"EOFLOW_OTEL": "off"})):
        done = subprocess.run(
            [sys.executable, "-c", NOTHING_IMPORTED.format(block=block),
             str(tmp_path / f"{name}.db")], capture_output=True, text=True, timeout=60,
            env=dict(os.environ, **env))
        assert done.returncode == 0 and done.stdout.strip() == "ok", (name, done.stderr)


PROVIDER_LATER = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from eoflow import Engine, step, workflow

@step()
def pl_step(n: int) -> int:
    return n + 1

@workflow()
def pl_flow(n: int) -> int:
    return pl_step(n)

exporter = InMemorySpanExporter()
with Engine(sys.argv[1]) as engine:
    assert engine.runtime.telemetry is not None
    assert engine.start(pl_flow, 1).result(timeout=30) == 2  # no SDK yet: no span
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert engine.start(pl_flow, 2).result(timeout=30) == 3
print(sorted(span.name for span in exporter.get_finished_spans()))
"""


def test_a_tracer_provider_set_after_the_engine_started_is_used_at_once(tmp_path: Path) -> None:
    """The check for an SDK reads the API's global on every run (it is not cached): the
    first run after the app sets its provider is traced, and the run before it is not."""
    done = subprocess.run([sys.executable, "-c", PROVIDER_LATER, str(tmp_path / "j.db")],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "EOFLOW_OTEL"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['eoflow.start pl_flow', 'step pl_step', 'workflow pl_flow']"
