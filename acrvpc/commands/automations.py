"""``acrvpc automations SPEC --notify TYPE/NAME``: notify people of failed builds and drift."""

from __future__ import annotations

from pathlib import Path

import typer

from acrvpc.cli import _load_spec_or_exit, app, console, err


@app.command()
def automations(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The spec whose builds and link to watch."),
    notify: str = typer.Option(..., "--notify", help="Notification block as <block-type-slug>/<name>, e.g. "
                                                     "slack-webhook/ops (save it first; see `prefect block ls`)."),
) -> None:
    """Create (or replace) Prefect automations that notify on acrvpc.build.failed and acrvpc.drift.detected."""
    spec = _load_spec_or_exit(spec_path)
    from acrvpc.automations import ensure_notifications

    try:
        names = ensure_notifications(spec, notify)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    for name in names:
        console.print(f"automation [bold]{name}[/] -> {notify}", highlight=False)
