"""Shared helpers for the benchmark scripts: run a DBOS peer script, print results."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"


def run_peer(python: str | None, script: str, *args: str, timeout: float = 900,
             cpu: int | None = None) -> dict[str, Any]:
    """Run a DBOS peer script in its own interpreter; its last stdout line is JSON. `cpu`:
    the process runs on that CPU only (as under `taskset -c`)."""
    if not python:
        return {"skipped": "no --dbos-python given"}
    pin = None if cpu is None else functools.partial(os.sched_setaffinity, 0, {cpu})
    done = subprocess.run([python, str(PEERS / script), *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=pin)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(title: str, rows: list[tuple[str, Any, Any]]) -> None:
    """rows: (label, eoflow figure, dbos figure) in per-second units."""
    print(f"\n== {title} ({machine()})")
    print(f"{'':38} {'eoflow/s':>12} {'DBOS/s':>10} {'ratio':>8}")
    for label, ours, theirs in rows:
        ratio = f"{ours / theirs:7.1f}x" if isinstance(theirs, (int, float)) and theirs else ""
        theirs_text = f"{theirs:10.1f}" if isinstance(theirs, (int, float)) else f"{'-':>10}"
        print(f"{label:38} {ours:12.1f} {theirs_text} {ratio:>8}")


def dump(name: str, data: dict[str, Any]) -> None:
    print(f"\nJSON {name} " + json.dumps(data, sort_keys=True), file=sys.stderr)


def fsync_ms(folder: str, rounds: int = 50) -> float:
    """The median time of one durable SQLite commit in `folder` (WAL, synchronous=FULL)."""
    conn = apsw.Connection(os.path.join(folder, "probe.db"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t(v)")
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.execute("COMMIT")
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return sorted(times)[len(times) // 2]


def one_cpu() -> int | None:
    """The CPU the one-CPU runs use: the last this process may run on (None where a process
    cannot be held to CPUs: macOS, Windows)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


@contextlib.contextmanager
def on_cpu(cpu: int | None) -> Iterator[None]:
    """Threads this thread starts inside run on `cpu` only (None: anywhere it may), as those
    of a process started under `taskset -c CPU` would; its own affinity is restored after."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
