"""``acrvpc webhook serve SPEC [--port N] [--host H] [--run-spec PATH]``: the GitLab webhook receiver.

Serves :mod:`deployments.webhook` with uvicorn (127.0.0.1:8480 by default). Routed pushes start flow
runs of ``webhook.deployment`` on the Prefect server named by ``PREFECT_API_URL``; the secret is
``ACRVPC_WEBHOOK_SECRET`` or the Prefect Secret block ``webhook.secret_block``. Before listening it
checks that the API URL is set, the secret exists and the deployment is deployed; each failure
exits 2 with the fix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from acrvpc.cli import _load_spec_or_exit, app, console, err

webhook_app = typer.Typer(no_args_is_help=True, help="The GitLab webhook receiver (push -> on-push build run).")
app.add_typer(webhook_app, name="webhook")


def _deployment_exists(name: str) -> str | None:
    """None when the deployment exists, else why it cannot be used."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        return (f"the Prefect server has no deployment {name}: deploy prefect.yaml first "
                f"(`prefect --no-prompt deploy --all` from the repository root)")
    except Exception as exc:  # noqa: BLE001 - shown to the person
        return f"cannot reach the Prefect API at {os.environ.get('PREFECT_API_URL')} ({type(exc).__name__})"
    return None


@webhook_app.command(name="serve")
def serve(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The spec whose webhook.routes decide what to build."),
    port: int = typer.Option(8480, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 behind a reverse proxy or LB)."),
    run_spec: Optional[str] = typer.Option(None, "--run-spec", help="spec_path passed to the flow runs, as the "
                                                                    "worker sees it (default: the deployment's)."),
) -> None:
    """Receive GitLab push and tag-push webhooks and start the on-push build deployment."""
    spec = _load_spec_or_exit(spec_path)
    if not os.environ.get("PREFECT_API_URL"):
        err.print("[red]PREFECT_API_URL is not set: point it at your Prefect server, e.g. "
                  "export PREFECT_API_URL=http://127.0.0.1:4200/api[/]", highlight=False)
        raise typer.Exit(2)
    from acrvpc.errors import PipelineError
    from tasks.webhook_hook import resolve_webhook_secret

    try:
        secret = resolve_webhook_secret(spec)
    except PipelineError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    problem = _deployment_exists(spec.webhook.deployment)
    if problem:
        err.print(f"[red]{problem}[/]", highlight=False)
        raise typer.Exit(2)
    import uvicorn

    from deployments.webhook import create_app, deployment_starter

    receiver = create_app(spec, secret, deployment_starter(spec.webhook.deployment), spec_path=run_spec)
    log = logging.getLogger("acrvpc.webhook")
    log.setLevel(logging.INFO)
    if not log.hasHandlers():  # importing prefect usually configured the root logger already
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    routes = len(spec.webhook.routes)
    console.print(f"webhook receiver on http://{host}:{port}/hooks/gitlab -> deployment {spec.webhook.deployment} "
                  f"({routes} route(s){'; every push will be ignored' if not routes else ''})", highlight=False)
    uvicorn.run(receiver, host=host, port=port, log_level="info")
