"""``acrvpc webhook serve (SPEC | --deployment build-on-push/NAME) [--port N] [--host H] [--run-spec PATH] [--rate-limit R] [--trusted-proxy IP]``.

Serves the GitLab webhook receiver (:mod:`deployments.webhook`) with uvicorn (127.0.0.1:8480 by
default). Routed pushes start flow runs of the on-push deployment on the Prefect server of
Prefect's settings (``PREFECT_API_URL`` from the environment, the profile or ``prefect config set``;
with ``PREFECT_API_AUTH_STRING`` when the server requires one). With ``--deployment`` the routes
come from the spec that deployment carries (``acrvpc deploy``), re-read every ``SPEC_REFRESH_S``
seconds, so the receiver and the runs read one spec; with a SPEC file, from the file, and runs go to
its ``webhook.deployment``. Deliveries are
authenticated by the X-Gitlab-Token secret (``ACRVPC_WEBHOOK_SECRET`` or the Prefect Secret block
``webhook.secret_block``) and, when configured, GitLab's signing token (``ACRVPC_WEBHOOK_SIGNING_SECRET``
or ``webhook.signing_secret_block``; the secret is then optional). ``--rate-limit`` and
``--trusted-proxy`` override ``webhook.rate_limit`` and ``webhook.trusted_proxies``. Before listening
it checks that the API URL is set, the credentials exist and the deployment is deployed (which also
proves the auth string); each failure exits 2 with the fix. No secret is ever printed or logged.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Optional

import typer

from acrvpc.cli import _load_spec_or_exit, app, console, err
from acrvpc.prefect_api import api_url
from acrvpc.spec import Spec
from acrvpc.spec_webhook import check_proxy, check_rate_limit

SPEC_REFRESH_S = 15.0  # how often --deployment re-reads the deployment's spec

webhook_app = typer.Typer(no_args_is_help=True, help="The GitLab webhook receiver (push -> on-push build run).")
app.add_typer(webhook_app, name="webhook")


def _read_deployment(name: str) -> tuple[Any, str | None]:
    """``(deployment, None)`` when it exists, else ``(None, why it cannot be used)``."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    url = api_url()
    try:
        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(name), None
    except ObjectNotFound:
        return None, (f"the Prefect server has no deployment {name}: deploy it first (`acrvpc deploy SPEC --pool "
                      f"POOL` makes build-on-push/<spec name>; prefect.yaml's: `prefect --no-prompt deploy --all`)")
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 401:
            return None, (f"the Prefect API at {url} refused the credentials (401): set PREFECT_API_AUTH_STRING to "
                          f"the server's PREFECT_SERVER_API_AUTH_STRING")
        return None, f"the Prefect API at {url} answered {exc.response.status_code}"
    except Exception as exc:  # noqa: BLE001 - shown to the person
        return None, f"cannot reach the Prefect API at {url} ({type(exc).__name__})"


def _deployed_spec(name: str) -> Spec:
    """The spec the deployment ``name`` carries; exits 2 with the fix when there is none."""
    from acrvpc.deploy import spec_of
    from acrvpc.spec import SpecError

    deployment, problem = _read_deployment(name)
    if problem:
        raise _exit(problem)
    try:
        return spec_of(deployment.parameters, f"deployment {name}")
    except SpecError as exc:
        raise _exit(str(exc)) from None


def _exit(message: str) -> typer.Exit:
    err.print(f"[red]{message}[/]", highlight=False)
    return typer.Exit(2)


class _SpecFollower:
    """Re-reads the deployment's spec every ``every`` seconds and hands it to the receiver (edits take effect)."""

    def __init__(self, name: str, receiver: Any, every: float = SPEC_REFRESH_S) -> None:
        self.name, self.receiver, self.every = name, receiver, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="acrvpc-spec-follower", daemon=True)

    def start(self) -> "_SpecFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        from acrvpc.deploy import spec_of

        log = logging.getLogger("acrvpc.webhook")
        while not self._stop.wait(self.every):
            deployment, problem = _read_deployment(self.name)
            if problem:
                log.warning("could not re-read the spec of %s (%s); routing with the last one", self.name, problem)
                continue
            try:
                spec = spec_of(deployment.parameters, f"deployment {self.name}")
            except Exception as exc:  # noqa: BLE001 - an invalid edit keeps the last good spec
                log.error("the spec of %s is not valid now; routing with the last one: %s", self.name, exc)
                continue
            if self.receiver.use_spec(spec):
                log.info("the routes of %s changed: now %d route(s)", self.name, len(spec.webhook.routes))


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
    spec_path: Optional[Path] = typer.Argument(None, metavar="[SPEC]", help="A spec file whose webhook.routes decide "
                                                                            "what to build (or --deployment)."),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="Route from the spec this on-push deployment "
                                                                        "carries (acrvpc deploy makes build-on-push/"
                                                                        "<name>) and start its runs; re-read every "
                                                                        f"{SPEC_REFRESH_S:.0f} s."),
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
    if (spec_path is None) == (deployment is None):
        raise _exit("give either SPEC (a spec file) or --deployment build-on-push/<name> (a spec deployed with "
                    "acrvpc deploy), not both and not neither")
    if deployment is not None and run_spec is not None:
        raise _exit("--run-spec: a deployment made by acrvpc deploy carries its spec; drop --run-spec")
    file_spec = _load_spec_or_exit(spec_path) if spec_path is not None else None
    try:
        given_limit = check_rate_limit(rate_limit) if rate_limit is not None else None
        given_proxies = [check_proxy(p) for p in trusted_proxy] if trusted_proxy else None
    except ValueError as exc:
        raise _exit(str(exc)) from None
    if not api_url():
        raise _exit("no Prefect API URL: set PREFECT_API_URL (or `prefect config set PREFECT_API_URL=...`), e.g. "
                    "http://127.0.0.1:4200/api")
    spec = file_spec if file_spec is not None else _deployed_spec(deployment)
    limit = given_limit or spec.webhook.rate_limit
    proxies = given_proxies if given_proxies is not None else list(spec.webhook.trusted_proxies)
    secret, signing = _credentials(spec)
    target = deployment or spec.webhook.deployment
    if deployment is None:
        _, problem = _read_deployment(target)
        if problem:
            raise _exit(problem)
    import uvicorn

    from prefect.settings import PREFECT_HOME

    from deployments.webhook import WebhookReceiver, deployment_starter
    from deployments.webhook_spool import Spool, SpoolDrainer

    spool_path = spool or Path(PREFECT_HOME.value()) / "acrvpc-webhook-spool.sqlite3"
    start = deployment_starter(target)
    deliveries = Spool(spool_path)
    receiver = WebhookReceiver(spec, secret, start, spec_path=run_spec, signing_secret=signing, rate_limit=limit,
                               trusted_proxies=proxies, spool=deliveries, deployment=target)
    drainer = SpoolDrainer(deliveries, start).start()  # queued deliveries, and those a restart left behind
    follower = _SpecFollower(deployment, receiver).start() if deployment else None
    log = logging.getLogger("acrvpc.webhook")
    log.setLevel(logging.INFO)
    if not log.hasHandlers():  # importing prefect usually configured the root logger already
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    routes = len(spec.webhook.routes)
    auth = "signed deliveries" + (" + X-Gitlab-Token" if secret else "") if signing else "X-Gitlab-Token"
    console.print(f"webhook receiver on http://{host}:{port}/hooks/gitlab -> deployment {target} "
                  f"({routes} route(s){'; every push will be ignored' if not routes else ''}; {auth}; "
                  f"{limit} per source{'; behind ' + ', '.join(proxies) if proxies else ''})", highlight=False)
    waiting = deliveries.pending()
    if waiting:
        console.print(f"{waiting} delivery(ies) from before were still waiting for their run: creating them now",
                      highlight=False)
    try:
        uvicorn.run(receiver.app(), host=host, port=port, log_level="info", proxy_headers=False, server_header=False)
    finally:
        if follower is not None:
            follower.stop()
        drainer.stop()
        deliveries.close()
