"""Serving an app: what `eoflow run` does between loading it and exiting."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from eoflow.engine.apploader import LoadedApp
from eoflow.engine.engine import Engine
from eoflow.engine.kafka.defs import CONSUMERS
from eoflow.engine.registry import REGISTRY

log = logging.getLogger("eoflow.engine")


def serve(app: LoadedApp, stop: threading.Event, *, journal: str | None = None,
          app_db: str | None = None, workers: int | None = None, brokers: str | None = None,
          grace_period: float | None = None,
          ready: Callable[[Engine], None] | None = None) -> None:
    """Open the journal, resume pending runs, start the app's consumers, and run until `stop`
    is set; then shut down gracefully (unfinished runs stay PENDING for the next start)."""
    with Engine(journal=journal, app_db=app_db, workers=workers, brokers=brokers,
                grace_period=grace_period) as engine:
        for hook in REGISTRY.start_hooks:
            hook()
        consumers = CONSUMERS.all()
        if consumers:
            engine.consume()
        engine.schedule()
        log.info("eoflow: app %s running: %d workflow(s), %d Kafka consumer(s); journal %s",
                 app.name, len(app.workflows), len(consumers), engine.path)
        if ready is not None:
            ready(engine)
        stop.wait()
        log.info("eoflow: shutting down (a second interrupt forces an immediate exit)")
