"""The `eoflow` command. Each command parses its options, calls one library function and
renders the result. The group below is the single error funnel: any EoflowError becomes one
line on stderr and exit status 1 (with the traceback only under -v)."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from eoflow.cli import commands, journal_cmds, status_cmd, trace_cmd, verify_cmd
from eoflow.cli.options import add_verbose, is_verbose
from eoflow.cli.render import error_line
from eoflow.errors import EoflowError


class EoflowCliError(click.ClickException):
    exit_code = 1

    def __init__(self, error: EoflowError, verbose: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.verbose = verbose

    def show(self, file: Any = None) -> None:
        if self.verbose:
            traceback.print_exception(self.error, file=sys.stderr)
        error_line(self.message)


class EoflowGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EoflowError as error:
            raise EoflowCliError(error, is_verbose(ctx)) from error


@click.group(cls=EoflowGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                "auto_envvar_prefix": "EOFLOW"})
@click.version_option(package_name="eoflow")
def cli() -> None:
    """eoflow: durable workflows and exactly-once Kafka consumption on one SQLite file.

    Run an app with `eoflow run app.py`; look inside its journal, even while it runs, with
    `eoflow status`. Every option can also be set with an EOFLOW_* environment variable.
    """


commands.register(cli)
cli.add_command(journal_cmds.journal)
journal_cmds.journal.add_command(trace_cmd.trace)
cli.add_command(verify_cmd.verify)
cli.add_command(status_cmd.status)
add_verbose(cli)


def main() -> None:
    """Console entry point."""
    cli(prog_name="eoflow")


if __name__ == "__main__":  # pragma: no cover
    main()
