"""What OpenTelemetry costs: the same workload with tracing off, through the API with no SDK
(no-op), and with the SDK recording every span into an in-memory exporter.

    python benchmarks/tracing_overhead.py [--runs 3000] [--rounds 3] [--dbos-python PY]

The workload: --runs runs of a workflow of a step, a transaction and a step (3 spans and an
execution span per run, and a start span), started at once with start() from one thread, at
full durability. Each mode runs in a fresh interpreter (a tracer provider is set once per
process): "off" is EOFLOW_OTEL=off (OpenTelemetry never imported), "no-op" the API with no
SDK configured (what an app gets by installing eoflow[otel] alone), "in-memory" the SDK with
a BatchSpanProcessor and an InMemorySpanExporter, and metrics through the SDK as well. The
figures: runs/s (best of --rounds), the process's CPU per run, the spans exported; beside
them the disk's commit latency, and DBOS's 3-step workflows started at once, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dump, fsync_ms, machine, run_peer  # noqa: E402

MODES = ("off", "no-op", "in-memory")


def measure(mode: str, runs: int, rounds: int) -> dict[str, float]:
    """One mode, in this process (a child of main()): the best round's figures."""
    exporter = None
    if mode == "in-memory":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    from eoflow import Engine, step, transaction, workflow

    @step()
    def to_parse(i: int) -> int:
        return i + 1

    @transaction()
    def to_record(x: int) -> int:
        return x * 2

    @step()
    def to_reply(x: int) -> str:
        return str(x)

    @workflow()
    def to_order(i: int) -> str:
        return to_reply(to_record(to_parse(i)))

    best = {"per_second": 0.0, "cpu_us_per_run": 0.0}
    with tempfile.TemporaryDirectory() as folder, \
            Engine(journal=os.path.join(folder, "t.db"), durability="full") as engine:
        for i in range(20):  # warm up
            engine.start(to_order, i).result(timeout=60)
        for _ in range(rounds):
            cpu, started = time.process_time(), time.perf_counter()
            handles = [engine.start(to_order, i) for i in range(runs)]
            for handle in handles:
                handle.result(timeout=600)
            wall, used = time.perf_counter() - started, time.process_time() - cpu
            if runs / wall > best["per_second"]:
                best = {"per_second": runs / wall, "cpu_us_per_run": used / runs * 1e6}
    if exporter is not None:
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        best["spans"] = len(exporter.get_finished_spans())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dbos-python")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # a child's
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.runs, args.rounds)))
        return
    with tempfile.TemporaryDirectory() as folder:
        commit = fsync_ms(folder)
    results = {}
    for mode in MODES:
        env = dict(os.environ, EOFLOW_OTEL="off" if mode == "off" else "on")
        done = subprocess.run([sys.executable, __file__, "--mode", mode, "--runs",
                               str(args.runs), "--rounds", str(args.rounds)],
                              capture_output=True, text=True, env=env, timeout=1800)
        if done.returncode != 0:
            sys.exit(f"mode {mode} failed: {done.stderr.strip()[-2000:]}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    dbos = run_peer(args.dbos_python, "dbos_workflows.py", "--mode", "concurrent",
                    "--count", str(args.runs))
    theirs = dbos.get("per_second")
    off = results["off"]
    print(f"\n== tracing overhead ({machine()}); one commit takes {commit:.2f} ms")
    print(f"{args.runs} runs of a step + a transaction + a step, started at once, best of "
          f"{args.rounds}")
    print(f"{'mode':12} {'runs/s':>9} {'vs off':>8} {'CPU us/run':>11} {'+CPU':>7} "
          f"{'spans':>7} {'vs DBOS':>8}")
    for mode, r in results.items():
        ratio = f"{r['per_second'] / theirs:7.1f}x" if isinstance(theirs, (int, float)) \
            and theirs else "-"
        print(f"{mode:12} {r['per_second']:9,.0f} {r['per_second'] / off['per_second']:8.2f} "
              f"{r['cpu_us_per_run']:11,.0f} {r['cpu_us_per_run'] - off['cpu_us_per_run']:+7,.0f}"
              f" {int(r.get('spans', 0)):7,} {ratio:>8}")
    print(f"DBOS (3 steps, started at once, no tracing): "
          f"{theirs if theirs is not None else dbos}")
    dump("tracing_overhead", {"eoflow": results, "dbos": dbos, "commit_ms": commit})


if __name__ == "__main__":
    main()
