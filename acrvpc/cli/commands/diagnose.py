"""``acrvpc diagnose SPEC [--build RECORD_ID] [--json]``: why a build failed, which hop of its path broke.

The same read-only diagnosis the build task runs when a build fails (:mod:`tasks.diagnose`), after the
fact: every hop of the path from the registry's builders to GitLab (the build ENI, the link's egress,
GitLab's security group, the VBR return route, the code-source binding, the GitLab token), each with the
fix preflight gives. With ``--build`` the build record is read and classified first (the stage the API
reports, the log tail); a failure that is not a network or GitLab-auth one (a Dockerfile step, a push)
is named and the path is not diagnosed. Creates nothing, needs no Prefect server.

Exit codes: 0 the path is healthy (or the build's failure lies elsewhere), 1 a hop is broken, 2 invalid
input (the spec, the credentials, or a build record that does not exist). ``--json`` prints exactly
``{"spec", "build": {...} | null, "failure": {...} | null, "diagnosed": bool, "healthy": bool | null,
"hop": str, "hops": [{"id", "result", "detail", "fix"}], "summary"}`` on stdout.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from acrvpc.cli.common import app, console, err, load_spec_or_exit

_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def hops_table(hops: list[Any], title: str) -> Table:
    """The hops as a rich table: hop, result, detail, fix."""
    table = Table(title=title, show_lines=True)
    table.add_column("hop", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    table.add_column("fix", overflow="fold", ratio=2)
    for h in hops:
        table.add_row(h.id, f"[{_STYLE.get(h.result, '')}]{h.result}[/]", h.detail, h.fix or "")
    return table


@app.command(name="diagnose")
def diagnose_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The YAML spec whose build path to check."),
    build: str | None = typer.Option(
        None, "--build", metavar="RECORD_ID", help="A build record to explain (its stage and log tail are read first)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, nothing else."),
) -> None:
    """Say why a build failed: check every hop from the registry's builders to GitLab. Creates nothing."""
    spec = load_spec_or_exit(spec_path)
    from acrvpc.cli.commands.preflight import clients_or_exit

    clients = clients_or_exit(spec)
    from acrvpc.cloud import clients as cloud
    from acrvpc.cloud.errors import PipelineError
    from tasks.diagnose import HEALTHY, classify_outcome, diagnose_path, read_build

    outcome, failure = None, None
    if build is not None:
        if not build.strip():
            err.print("[red]--build: give a build record id (from the build table or the build summary)[/]")
            raise typer.Exit(2)
        try:
            outcome = read_build(clients.cr, spec, build.strip())
        except PipelineError as exc:
            if exc.code in ("BUILD_RECORD_NOT_EXIST", "REPO_NOT_EXIST", "NAMESPACE_NOT_EXIST"):
                err.print(f"[red]{exc}[/]", highlight=False)
                raise typer.Exit(2) from None
            raise
        failure = classify_outcome(outcome)
    diagnosis = None
    if failure is None or failure.diagnose:
        diagnosis = diagnose_path(
            clients,
            spec,
            gitlab=functools.partial(cloud.gitlab_for, spec),
            repository=outcome.repository if outcome else None,
        )
    broken = diagnosis.broken if diagnosis is not None else []
    if diagnosis is not None:
        summary = diagnosis.summary()
    elif failure is not None:
        summary = (
            f"{failure.cause.replace('_', ' ')} failure in the {failure.stage} stage"
            + (f": {failure.hint}" if failure.hint else "")
            + "; not a network or GitLab-auth failure, so "
            "the path was not diagnosed"
        )
    else:
        summary = HEALTHY
    if outcome is not None and failure is None:
        summary = f"build {outcome.build_record_id} ended {outcome.status}: nothing to explain; path: {summary}"
    if as_json:
        print(
            json.dumps(
                {
                    "spec": spec.name,
                    "build": outcome.model_dump(
                        include={"build_record_id", "repository", "image", "status", "log_tail"}
                    )
                    if outcome
                    else None,
                    "failure": failure.model_dump() if failure else None,
                    "diagnosed": diagnosis is not None,
                    "healthy": diagnosis.healthy if diagnosis is not None else None,
                    "hop": broken[0].id if broken else "",
                    "hops": [h.model_dump() for h in diagnosis.hops] if diagnosis else [],
                    "summary": summary,
                }
            )
        )
    else:
        if outcome is not None:
            what = (
                f"{failure.cause.replace('_', ' ')} failure in the {failure.stage} stage ({failure.api_stage or '?'})"
                if failure
                else "no failure"
            )
            console.print(
                f"build {outcome.build_record_id} of {outcome.image}: {outcome.status}; {what}",
                highlight=False,
                markup=False,
            )
            if failure and failure.hint:
                console.print(f"  log: {failure.hint}", highlight=False, markup=False)
        if diagnosis is not None:
            console.print(hops_table(diagnosis.hops, f"diagnose: {spec.name} ({spec_path})"))
        verdict = f"[bold red]{len(broken)} hop(s) broken[/]" if broken else "[green]no hop broken[/]"
        console.print(f"{verdict}: {summary}; nothing was created", highlight=False)
    raise typer.Exit(1 if broken else 0)
