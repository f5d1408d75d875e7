"""``acrvpc plan SPEC [--json]``: the writes a run would make (resource, action, why), without making any.

Runs :func:`tasks.plan.plan_run` with clients from :mod:`acrvpc.cloud.clients`: preflight, then every stage's
reads in plan mode. Exit codes: 0 when the plan was printed (empty or not), 1 when a preflight check
fails or a stage's read fails (a run would stop there), 2 when the spec is invalid or names credentials
that do not exist. ``--json`` prints ``{"spec", "writes": [{"stage", "resource", "action", "why"}],
"notes": [...]}``, or ``{"error": {"code", "message", "fix"}}`` with exit 1.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer
from rich.table import Table

from acrvpc.cli.commands.preflight import clients_or_exit
from acrvpc.cli.common import app, console, err, load_spec_or_exit


def plan_table(plan) -> Table:
    """The planned writes as a rich table: stage, resource, action, why."""
    table = Table(title=f"plan: {plan.spec}")
    table.add_column("stage", no_wrap=True)
    table.add_column("resource", overflow="fold")
    table.add_column("action", no_wrap=True, style="cyan")
    table.add_column("why", overflow="fold")
    for w in plan.writes:
        table.add_row(w.stage, w.resource, w.action, w.why)
    return table


@app.command(name="plan")
def plan_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The YAML spec to plan."),
    as_json: bool = typer.Option(False, "--json", help='Print {"spec", "writes": [...], "notes": [...]}.'),
) -> None:
    """Show the writes a run of SPEC would make (none for a converged spec), making none."""
    spec = load_spec_or_exit(spec_path)
    clients = clients_or_exit(spec)  # credentials first: without them nothing else is loaded or asked
    from acrvpc.cloud import clients as cloud
    from acrvpc.cloud.errors import error_code, explain
    from tasks.plan import plan_run

    try:
        plan = plan_run(clients, functools.partial(cloud.gitlab_for, spec), spec)
    except Exception as exc:  # noqa: BLE001 - a failed check or read: shown with its code, exit 1
        if as_json:
            print(
                json.dumps(
                    {
                        "error": {
                            "code": error_code(exc) or type(exc).__name__,
                            "message": str(exc),
                            "fix": getattr(exc, "fix", ""),
                        }
                    }
                )
            )
        else:
            err.print(f"[red]no plan: {explain(exc)}[/]", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"spec": plan.spec, "writes": [w.model_dump() for w in plan.writes], "notes": plan.notes}))
        return
    if plan.writes:
        console.print(plan_table(plan))
        console.print(f"{len(plan.writes)} write(s) planned; nothing was changed")
    else:
        console.print(f"plan: {plan.spec} is converged: a run would make no write (nothing was changed)")
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
