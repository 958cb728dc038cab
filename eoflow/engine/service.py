"""Serving an app: what `eoflow run` does between loading it and exiting."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

from eoflow.engine.apploader import LoadedApp
from eoflow.engine.config import EngineConfig
from eoflow.engine.engine import Engine
from eoflow.engine.kafka.defs import CONSUMERS
from eoflow.engine.registry import REGISTRY
from eoflow.engine.versions import uses_patches

log = logging.getLogger("eoflow.engine")


def serve(app: LoadedApp, stop: threading.Event, *, journal: str | None = None,
          app_db: str | None = None, workers: int | None = None, brokers: str | None = None,
          grace_period: float | None = None, retention: str | None = None,
          ready: Callable[[Engine], None] | None = None, lease: str | None = None,
          app_version: str | None = None) -> None:
    """Open the journal, resume pending runs, start the app's consumers, and run until `stop`
    is set; then shut down gracefully (unfinished runs stay PENDING for the next start)."""
    path = EngineConfig.resolve(journal, app_db, workers, None, grace_period, brokers,
                                retention, lease=lease).journal
    created = not os.path.exists(path)
    consuming = False
    try:
        with Engine(journal=journal, app_db=app_db, workers=workers, brokers=brokers,
                    grace_period=grace_period, retention=retention, lease=lease,
                    app_version=app_version) as engine:
            for hook in REGISTRY.start_hooks:
                hook()
            consumers = CONSUMERS.all()
            if consumers:
                engine.consume()  # checks every consumer before it starts any
            consuming = True
            scheduler = engine.schedule()
            schedules = len(scheduler.schedules) if scheduler is not None else 0
            window = engine.config.retention
            _warn_of_patches(engine)
            log.info("eoflow: app %s (version %s) running: %d workflow(s), %d Kafka "
                     "consumer(s), %d schedule(s); journal %s (%s)", app.name,
                     engine.app_version, len(app.workflows), len(consumers), schedules,
                     engine.path,
                     "keeping every run" if window is None else
                     f"forgetting finished runs after {window:g}s")
            if ready is not None:
                ready(engine)
            while not stop.wait(0.2):
                if engine.fenced is not None:
                    raise engine.fenced
            log.info("eoflow: shutting down (a second interrupt forces an immediate exit)")
    except BaseException:
        if created and not consuming:  # nothing was consumed: leave no journal behind
            _remove_journal_files(path)
        raise


def _remove_journal_files(path: str) -> None:
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal", f"{path}.lock"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def _warn_of_patches(engine: Engine) -> None:
    """Patches let one version serve old and new runs; a version that is a hash of the code
    changes with every patch, and its engines leave the older runs waiting."""
    if engine.config.app_version is None and uses_patches(REGISTRY.workflows()):
        log.warning("eoflow: this app uses eoflow.patched(), but its version is a hash of its "
                    "code (%s), which every patch changes: runs started by the code before "
                    "will wait for that code. Give the app a version of your own "
                    "(--app-version) and keep it across patched deploys", engine.app_version)
