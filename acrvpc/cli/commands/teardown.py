"""``acrvpc teardown SPEC``: delete the build link's ENIs and security groups, without a Prefect server.

Runs :func:`tasks.teardown.teardown_link` directly (the ``teardown`` flow runs the same function
as a task). Lists what it will delete and asks first, unless ``--yes``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.table import Table

from acrvpc.cli.commands.preflight import clients_or_exit
from acrvpc.cli.common import app, console, err, load_spec_or_exit

HELP = (
    "Delete the link's ENIs and security groups tagged acr-vpc-build:link=<spec name> in the spec's VPC "
    "(ENIs first, waiting out Detaching). Nothing untagged is touched; Container Registry resources "
    "(namespaces, repositories, build rules, code-source bindings, images) are kept. Asks first unless --yes; "
    "refuses (exit 2) when stdin is not a terminal and --yes is not given."
)


@app.command(help=HELP)
def teardown(
    spec: Path = typer.Argument(..., help="The YAML spec whose link to remove."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking (needed when stdin is not a terminal)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Delete the link's ENIs and security groups tagged for SPEC (see :data:`HELP`)."""
    the_spec = load_spec_or_exit(spec)
    ecs = clients_or_exit(the_spec).ecs  # credentials first: without them nothing else is loaded or asked
    from acrvpc.cloud.errors import explain
    from tasks.teardown import KEPT, find_link_resources, teardown_link

    key, value = the_spec.tag
    try:
        found = find_link_resources(ecs, the_spec)
    except Exception as exc:  # noqa: BLE001 - shown to the person
        _fail(as_json, explain(exc))
    total = sum(len(ids) for ids in found.values())
    if total == 0:
        if as_json:
            print(json.dumps({"ok": True, "resources": {}, "changes": [], "notes": [KEPT]}))
        else:
            console.print(f"nothing tagged {key}={value} in {the_spec.network.vpc_id}: nothing to delete\n{KEPT}.")
        return
    if not as_json:
        table = Table(title=f"tagged {key}={value} in {the_spec.network.vpc_id} (deleted in this order)")
        table.add_column("kind")
        table.add_column("id")
        for kind, ids in found.items():
            for rid in ids:
                table.add_row(kind.replace("_", " ").rstrip("s"), rid)
        console.print(table)
        console.print(f"{KEPT}.")
    if not yes:
        if not sys.stdin.isatty():
            err.print(
                "[red]refusing to delete without confirmation: stdin is not a terminal. Pass --yes to "
                "delete the resources listed above.[/]",
                highlight=False,
            )
            raise typer.Exit(2)
        if not typer.confirm(f"Delete these {total} resource(s)?", default=False, err=True):
            err.print("nothing deleted")
            raise typer.Exit(1)
    try:
        outcome = teardown_link(ecs, the_spec)
    except Exception as exc:  # noqa: BLE001 - shown to the person
        _fail(as_json, explain(exc))
    if as_json:
        print(json.dumps({"ok": True, **outcome.model_dump(include={"resources", "changes", "notes"})}))
        return
    for change in outcome.changes:
        console.print(f"  {change}", highlight=False)
    console.print(f"teardown of link {the_spec.name}: {len(outcome.changes)} write(s)")


def _fail(as_json: bool, message: str) -> NoReturn:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        err.print(f"[red]teardown failed:[/] {message}", highlight=False)
    raise typer.Exit(1)
