"""eoflow: durable workflows and exactly-once Kafka consumption, on one SQLite file."""

from __future__ import annotations

import logging

from eoflow.client import Client
from eoflow.engine.context import db, set_workflow_id, workflow_id
from eoflow.engine.decorators import step, transaction, workflow
from eoflow.engine.engine import Engine
from eoflow.engine.handle import WorkflowHandle
from eoflow.engine.kafka.defs import KafkaMessage, kafka, kafka_consume
from eoflow.engine.patches import deprecated_patch, patched
from eoflow.engine.primitives import get_event, recv, send, set_event, sleep
from eoflow.engine.registry import on_start
from eoflow.engine.scheduling.queues import Queue
from eoflow.engine.scheduling.schedules import scheduled
from eoflow.errors import EoflowError
from eoflow.journal.records import Status

logger: logging.Logger = logging.getLogger("eoflow.app")
"""A standard logger for application code (`eoflow.logger.info(...)`)."""

__all__ = [
    "Client",
    "Engine",
    "EoflowError",
    "KafkaMessage",
    "Queue",
    "Status",
    "WorkflowHandle",
    "db",
    "deprecated_patch",
    "get_event",
    "kafka",
    "kafka_consume",
    "logger",
    "on_start",
    "patched",
    "recv",
    "scheduled",
    "send",
    "set_event",
    "set_workflow_id",
    "sleep",
    "step",
    "transaction",
    "workflow",
    "workflow_id",
]
