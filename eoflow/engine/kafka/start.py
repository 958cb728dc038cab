"""Starting an app's consumers: every consumer is checked before any starts, each loop runs
on its own thread, and a watchdog reports a loop that stops coming back from the client."""

from __future__ import annotations

import logging
import time

from eoflow.engine.background import Background
from eoflow.engine.config import DEFAULT_BROKERS, parse_brokers
from eoflow.engine.kafka.consumer import ConsumerLoop
from eoflow.engine.kafka.defs import CONSUMERS, ConsumerSpec
from eoflow.engine.registry import Definition
from eoflow.engine.runtime import Runtime
from eoflow.engine.scheduling.queues import queue_named
from eoflow.errors import DefinitionError

log = logging.getLogger("eoflow.kafka")
STALL = 60.0  # seconds a consumer loop may spend in one pass before the watchdog reports it


def brokers_for(spec: ConsumerSpec, override: tuple[str, ...] | None) -> tuple[str, ...]:
    """--brokers / EOFLOW_KAFKA_BROKERS, else what the code says (@kafka on the class or
    bootstrap_servers), else localhost:9092."""
    return override or spec.brokers or DEFAULT_BROKERS


def start_consumers(rt: Runtime, handlers: list[Definition],
                    brokers: str | list[str] | None) -> list[ConsumerLoop]:
    """Start a loop per @kafka_consume handler definition given (all when none are)."""
    override = parse_brokers(brokers) if brokers else rt.config.brokers
    specs = CONSUMERS.all()
    if handlers:
        specs = [spec for spec in specs if any(spec.definition is d for d in handlers)]
        if len(specs) != len(handlers):
            raise DefinitionError(", ".join(d.name for d in handlers),
                                  "not every handler given has @kafka_consume")
    from eoflow.engine.kafka.source import check_consumer_config  # the only kafka-python user

    for spec in specs:  # mistakes in the code fail here, before any loop starts
        check_consumer_config(spec.name, spec.config)
        if spec.queue is not None and queue_named(spec.queue) is None:
            raise DefinitionError(spec.name, f"its queue {spec.queue!r} is not declared; "
                                             f"create eoflow.Queue({spec.queue!r}) first")
    loops = []
    for spec in specs:
        loop = ConsumerLoop(rt, spec, brokers_for(spec, override))
        rt.add_service(loop)
        loop.start()
        loops.append(loop)
    if loops:
        watchdog = Watchdog(loops)
        rt.add_service(watchdog)
        watchdog.start()
    return loops


class Watchdog(Background):
    """Reports, once per stall, a consumer loop stuck in one pass for over STALL seconds (a
    client that never returns from poll, a handler that never ends): the partition is not
    moving, and an operator must know."""

    def __init__(self, loops: list[ConsumerLoop], every: float = 5.0) -> None:
        super().__init__("eoflow-kafka-watchdog")
        self._loops = loops
        self._every = every

    def _run(self) -> None:
        reported: set[int] = set()
        while not self._stop.wait(self._every):
            now = time.monotonic()
            for loop in self._loops:
                stalled = now - loop.last_beat
                if stalled > STALL and loop.alive and id(loop) not in reported:
                    reported.add(id(loop))
                    log.error("kafka %s: no progress for %.0fs: the consumer is stuck in one "
                              "pass (inside the Kafka client, or a handler that does not end); "
                              "its partitions do not move", loop.describe, stalled)
                elif stalled <= STALL and id(loop) in reported:
                    reported.discard(id(loop))
                    log.info("kafka %s: making progress again", loop.spec.name)
