"""`make demo`: exactly-once order processing that survives `kill -9`, on a laptop.

1. starts the embedded Kafka-compatible broker on a free local port;
2. streams order messages to the `orders` topic;
3. runs examples/orders.py under `eoflow run`;
4. kills it with SIGKILL mid-stream, then starts it again;
5. ends with a table proving that every message was applied exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from eoflow.devbroker import LocalBroker
from eoflow.engine.kafka.source import Producer, create_topic

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
JOURNAL = WORK / "journal.db"
MESSAGES = 400
console = Console()


def read_state() -> dict[str, int]:
    """What the journal file says right now (read-only; the app keeps running)."""
    state = {"orders": 0, "applied_twice": 0, "success": 0, "pending": 0}
    if not JOURNAL.exists():
        return state
    try:
        conn = apsw.Connection(str(JOURNAL), flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return state
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "orders" in tables:
            state["orders"], state["applied_twice"] = conn.execute(
                "SELECT count(*), coalesce(sum(applied > 1), 0) FROM orders").fetchone()
        if "eoflow_workflows" in tables:
            for status, count in conn.execute(
                    "SELECT status, count(*) FROM eoflow_workflows GROUP BY status"):
                state[status.lower()] = count
    except apsw.Error:
        pass
    finally:
        conn.close()
    return state


def start_app(brokers: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("a") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "eoflow.cli.main", "run", str(ROOT / "examples" / "orders.py"),
             "--journal", str(JOURNAL), "--brokers", brokers],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=WORK)


def progress(events: list[str], sent: int) -> Group:
    state = read_state()
    table = Table(title="exactly-once order processing", title_justify="left")
    for column in ("messages sent", "orders recorded", "workflows done", "in flight"):
        table.add_column(column, justify="right")
    table.add_row(str(sent), str(state["orders"]), str(state["success"]), str(state["pending"]))
    return Group(table, *(Text(event) for event in events[-6:]))


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    log = WORK / "app.log"
    events: list[str] = []
    sent = [0]
    with LocalBroker() as broker:
        brokers = broker.address
        create_topic((brokers,), "orders", 3)
        events.append(f"broker up at {brokers}; topic 'orders' created")

        def produce() -> None:
            producer = Producer((brokers,))
            for i in range(MESSAGES):
                order = {"id": i, "amount_cents": 500 + (i * 37) % 5000}
                producer.send("orders", json.dumps(order).encode())
                sent[0] += 1
                if i % 20 == 19:
                    producer.flush()
                    time.sleep(0.25)
            producer.flush()
            producer.close()

        feeder = threading.Thread(target=produce, daemon=True)
        with Live(progress(events, 0), console=console, refresh_per_second=8) as live:
            def tick(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    live.update(progress(events, sent[0]))
                    time.sleep(0.1)

            app = start_app(brokers, log)
            events.append(f"eoflow run examples/orders.py (pid {app.pid})")
            feeder.start()
            while read_state()["orders"] < MESSAGES * 0.3 and app.poll() is None:
                tick(0.2)
            app.send_signal(signal.SIGKILL)
            app.wait()
            events.append(f"kill -9 {app.pid} with {read_state()['orders']} orders recorded "
                          "and messages still arriving")
            tick(1.0)
            app = start_app(brokers, log)
            events.append(f"restarted: eoflow run examples/orders.py (pid {app.pid}); it "
                          "resumes pending workflows and rejoins the consumer group")
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                state = read_state()
                if (sent[0] == MESSAGES and state["orders"] == MESSAGES
                        and state["pending"] == 0 and state["success"] == MESSAGES):
                    break
                tick(0.3)
            app.send_signal(signal.SIGTERM)
            app.wait(timeout=60)
            events.append(f"stopped with SIGTERM (exit status {app.returncode})")
            live.update(progress(events, sent[0]))
    console.print()
    state = read_state()
    ok = (state["orders"] == MESSAGES and state["applied_twice"] == 0
          and state["success"] == MESSAGES and state["pending"] == 0)
    final = Table(title="Result", title_justify="left")
    final.add_column("check")
    final.add_column("value", justify="right")
    final.add_row("messages sent to Kafka", str(sent[0]))
    final.add_row("orders recorded (one row per order id)", str(state["orders"]))
    final.add_row("orders whose transaction ran more than once", str(state["applied_twice"]))
    final.add_row("orders missing", str(MESSAGES - state["orders"]))
    final.add_row("workflows SUCCESS / still PENDING", f"{state['success']} / {state['pending']}")
    console.print(final)
    verdict = ("every message was applied exactly once, across a kill -9" if ok
               else f"NOT exactly once: see {log}")
    console.print(Text(verdict, style="bold green" if ok else "bold red"))
    command = os.path.relpath(Path(sys.executable).parent / "eoflow")  # .venv/bin/eoflow
    console.print(f"Look inside: {command} status --journal {os.path.relpath(JOURNAL)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
