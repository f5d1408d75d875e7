"""``acrvpc automations SPEC [--notify TYPE/NAME] [--failover]``: notifications and crash failover."""

from __future__ import annotations

from pathlib import Path

import typer

from acrvpc.cli.common import app, console, err, load_spec_or_exit


@app.command()
def automations(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The spec whose builds and link to watch."),
    notify: str | None = typer.Option(
        None,
        "--notify",
        help="Notification block as <block-type-slug>/<name>, e.g. slack-webhook/ops "
        "(save it first; see `prefect block ls`).",
    ),
    failover: bool = typer.Option(
        False,
        "--failover",
        help="Crash failover: mark runs whose host died Crashed (heartbeats stopped, or never "
        "started) and rerun them on a surviving worker. Workers need "
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY (>= 30) and shared result storage.",
    ),
    failover_after: float = typer.Option(
        90.0,
        "--failover-after",
        metavar="SECONDS",
        help="With --failover: how long without a heartbeat (or without Running after "
        "Pending) before a run counts as crashed; more than the heartbeat period.",
    ),
) -> None:
    """Create (or replace) Prefect automations: notify on acrvpc.build.failed / acrvpc.drift.detected (--notify),
    and fail over runs whose worker host died (--failover)."""
    if notify is None and not failover:
        err.print(
            "[red]nothing to create: give --notify <block-type-slug>/<name> (notifications), --failover "
            "(crash failover), or both[/]",
            highlight=False,
        )
        raise typer.Exit(2)
    spec = load_spec_or_exit(spec_path)
    from acrvpc.automations import ensure_failover, ensure_notifications

    try:
        if failover:
            from acrvpc.automations import failover_automations

            failover_automations(failover_after)  # refuse a bad window before anything is created
        names = ensure_notifications(spec, notify) if notify is not None else []
        for name in names:
            console.print(f"automation [bold]{name}[/] -> {notify}", highlight=False)
        if failover:
            for name in ensure_failover(failover_after):
                console.print(f"automation [bold]{name}[/] (crash failover, {failover_after:g} s)", highlight=False)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
