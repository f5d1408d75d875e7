"""``acrvpc webhook serve SPEC [--port N] [--host H] [--run-spec PATH] [--rate-limit R] [--trusted-proxy IP]``.

Serves the GitLab webhook receiver (:mod:`deployments.webhook`) with uvicorn (127.0.0.1:8480 by
default). Routed pushes start flow runs of ``webhook.deployment`` on the Prefect server named by
``PREFECT_API_URL`` (with ``PREFECT_API_AUTH_STRING`` when the server requires one). Deliveries are
authenticated by the X-Gitlab-Token secret (``ACRVPC_WEBHOOK_SECRET`` or the Prefect Secret block
``webhook.secret_block``) and, when configured, GitLab's signing token (``ACRVPC_WEBHOOK_SIGNING_SECRET``
or ``webhook.signing_secret_block``; the secret is then optional). ``--rate-limit`` and
``--trusted-proxy`` override ``webhook.rate_limit`` and ``webhook.trusted_proxies``. Before listening
it checks that the API URL is set, the credentials exist and the deployment is deployed (which also
proves the auth string); each failure exits 2 with the fix. No secret is ever printed or logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from acrvpc.cli import _load_spec_or_exit, app, console, err
from acrvpc.spec import Spec
from acrvpc.spec_webhook import check_proxy, check_rate_limit

webhook_app = typer.Typer(no_args_is_help=True, help="The GitLab webhook receiver (push -> on-push build run).")
app.add_typer(webhook_app, name="webhook")


def _deployment_exists(name: str) -> str | None:
    """None when the deployment exists, else why it cannot be used."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        return (f"the Prefect server has no deployment {name}: deploy prefect.yaml first "
                f"(`prefect --no-prompt deploy --all` from the repository root)")
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 401:
            return (f"the Prefect API at {os.environ.get('PREFECT_API_URL')} refused the credentials (401): set "
                    f"PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING")
        return f"the Prefect API at {os.environ.get('PREFECT_API_URL')} answered {exc.response.status_code}"
    except Exception as exc:  # noqa: BLE001 - shown to the person
        return f"cannot reach the Prefect API at {os.environ.get('PREFECT_API_URL')} ({type(exc).__name__})"
    return None


def _credentials(spec: Spec) -> tuple[str | None, str | None]:
    """``(secret, signing token)`` for the receiver; exits 2 with the fix when they are missing or invalid."""
    from acrvpc.errors import PipelineError
    from tasks.webhook_hook import resolve_signing_secret, resolve_webhook_secret

    try:
        signing = resolve_signing_secret(spec)
        secret = resolve_webhook_secret(spec, required=signing is None)
    except PipelineError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    return secret, signing


@webhook_app.command(name="serve")
def serve(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The spec whose webhook.routes decide what to build."),
    port: int = typer.Option(8480, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 behind a reverse proxy or LB)."),
    run_spec: Optional[str] = typer.Option(None, "--run-spec", help="spec_path passed to the flow runs, as the "
                                                                    "worker sees it (default: the deployment's)."),
    rate_limit: Optional[str] = typer.Option(None, "--rate-limit", help="Deliveries per source address, e.g. "
                                                                        "1000/second (default: webhook.rate_limit, "
                                                                        "60/minute)."),
    trusted_proxy: Optional[list[str]] = typer.Option(None, "--trusted-proxy", help="A reverse proxy's IP or CIDR "
                                                                                    "whose X-Forwarded-For is "
                                                                                    "believed (repeatable; default: "
                                                                                    "webhook.trusted_proxies)."),
    spool: Optional[Path] = typer.Option(None, "--spool", help="SQLite file keeping deliveries until their run "
                                                               "exists (default: $PREFECT_HOME/acrvpc-webhook-"
                                                               "spool.sqlite3)."),
) -> None:
    """Receive GitLab push and tag-push webhooks and start the on-push build deployment."""
    spec = _load_spec_or_exit(spec_path)
    try:
        limit = check_rate_limit(rate_limit) if rate_limit is not None else spec.webhook.rate_limit
        proxies = [check_proxy(p) for p in trusted_proxy] if trusted_proxy else list(spec.webhook.trusted_proxies)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    if not os.environ.get("PREFECT_API_URL"):
        err.print("[red]PREFECT_API_URL is not set: point it at your Prefect server, e.g. "
                  "export PREFECT_API_URL=http://127.0.0.1:4200/api[/]", highlight=False)
        raise typer.Exit(2)
    secret, signing = _credentials(spec)
    problem = _deployment_exists(spec.webhook.deployment)
    if problem:
        err.print(f"[red]{problem}[/]", highlight=False)
        raise typer.Exit(2)
    import uvicorn

    from prefect.settings import PREFECT_HOME

    from deployments.webhook import create_app, deployment_starter
    from deployments.webhook_spool import Spool, SpoolDrainer

    spool_path = spool or Path(PREFECT_HOME.value()) / "acrvpc-webhook-spool.sqlite3"
    start = deployment_starter(spec.webhook.deployment)
    deliveries = Spool(spool_path)
    receiver = create_app(spec, secret, start, spec_path=run_spec, signing_secret=signing, rate_limit=limit,
                          trusted_proxies=proxies, spool=deliveries)
    drainer = SpoolDrainer(deliveries, start).start()  # queued deliveries, and those a restart left behind
    log = logging.getLogger("acrvpc.webhook")
    log.setLevel(logging.INFO)
    if not log.hasHandlers():  # importing prefect usually configured the root logger already
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    routes = len(spec.webhook.routes)
    auth = "signed deliveries" + (" + X-Gitlab-Token" if secret else "") if signing else "X-Gitlab-Token"
    console.print(f"webhook receiver on http://{host}:{port}/hooks/gitlab -> deployment {spec.webhook.deployment} "
                  f"({routes} route(s){'; every push will be ignored' if not routes else ''}; {auth}; "
                  f"{limit} per source{'; behind ' + ', '.join(proxies) if proxies else ''})", highlight=False)
    waiting = deliveries.pending()
    if waiting:
        console.print(f"{waiting} delivery(ies) from before were still waiting for their run: creating them now",
                      highlight=False)
    try:
        uvicorn.run(receiver, host=host, port=port, log_level="info", proxy_headers=False, server_header=False)
    finally:
        drainer.stop()
        deliveries.close()
