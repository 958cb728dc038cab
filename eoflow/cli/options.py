"""Options shared by several commands, declared once, each with its EOFLOW_* variable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def journal_option(fn: F) -> F:
    return click.option(
        "--journal", "journal", default="eoflow.db", envvar="EOFLOW_JOURNAL", show_default=True,
        show_envvar=True, type=click.Path(dir_okay=False),
        help="The journal file (SQLite) of the app.")(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, envvar="EOFLOW_JSON",
                        show_envvar=True, help="Print JSON instead of tables.")(fn)


def brokers_option(fn: F) -> F:
    return click.option(
        "--brokers", envvar="EOFLOW_KAFKA_BROKERS", show_envvar=True, metavar="HOST:PORT,...",
        help="Kafka bootstrap brokers; overrides what the app's code says.")(fn)
