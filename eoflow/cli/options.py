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
        help="The journal of the app: a SQLite file, or a postgresql:// URL.")(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, envvar="EOFLOW_JSON",
                        show_envvar=True, help="Print JSON instead of tables.")(fn)


def brokers_option(fn: F, help: str = "Kafka bootstrap brokers; overrides what the app's "
                                       "code says.") -> F:
    return click.option(
        "--brokers", envvar="EOFLOW_KAFKA_BROKERS", show_envvar=True, metavar="HOST:PORT,...",
        help=help)(fn)


def producer_brokers_option(fn: F) -> F:
    return brokers_option(fn, "Kafka bootstrap brokers [default: localhost:9092].")


VERBOSE = "eoflow.verbose"  # key in click's context meta, shared by a group and its commands


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[VERBOSE] = True


def verbose_option() -> click.Option:
    """-v: debug logs and full tracebacks; accepted by the group and by every command."""
    return click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                        envvar="EOFLOW_VERBOSE", show_envvar=True, callback=_set_verbose,
                        help="Debug logs and full tracebacks on errors.")


def add_verbose(command: click.Command) -> None:
    """Give `command` (and, for a group, each of its commands) the -v option."""
    command.params.append(verbose_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_verbose(sub)


def is_verbose(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(VERBOSE))
