"""What :mod:`acrvpc.cli.app` and every module of :mod:`acrvpc.cli.commands` share.

The Typer ``app`` the commands register on, the two consoles (``console`` for results, ``err`` for
errors, on stderr) and :func:`load_spec_or_exit`. The import graph is
``acrvpc.cli.app -> acrvpc.cli.commands.* -> acrvpc.cli.common``: the commands never import the
module that loads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Prefect's embedded server (no PREFECT_API_URL) gets 20 s to start by default; a busy or small
# machine needs longer on its first run, when the database is created. Set before Prefect loads.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# The embedded server's telemetry service is off unless the person turned it on: offline it logs an ERROR
# on every run, and its first write (read-then-insert of the TELEMETRY_SESSION row in one deferred SQLite
# transaction) races the run's own writes and dies with a "database is locked" traceback. It is the server's
# only service that writes to SQLite and that the CLI does not need. The server subprocess inherits this.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer
from rich.console import Console

from acrvpc.cli.report import console_for_output

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build container images in a VPC with ACR Enterprise Edition, as a Prefect pipeline.",
)
console = console_for_output()
err = Console(stderr=True)


def load_spec_or_exit(path: Path) -> Any:
    """The spec at ``path``, or its error on stderr and exit code 2."""
    from acrvpc.domain.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
