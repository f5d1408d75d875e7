"""``acrvpc webhook serve (SPEC | --deployment build-on-push/NAME) [--port N] [--host H] [--run-spec PATH] [--rate-limit R] [--trusted-proxy IP] [--spool FILE] [--max-age S]``,
``acrvpc webhook deliveries [--state pending|dead|done] [--json]`` and ``acrvpc webhook replay (KEY | --all-dead)``.

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

Prefect unreachable at start is not a failure: the receiver listens, spools every delivery and
creates their runs when Prefect answers (``/healthz`` says ``reachable: false`` meanwhile). It then
needs the secret from ``ACRVPC_WEBHOOK_SECRET`` (a Secret block cannot be read), and with
``--deployment`` the spec it last read from the deployment (kept in the spool).

``deliveries`` and ``replay`` open the receiver's spool (``--spool``, the same default) while it
runs: ``replay`` makes dead letters pending again and the running receiver creates their runs.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer

from acrvpc.cli.common import app, console, err, load_spec_or_exit
from acrvpc.domain.spec import Spec
from acrvpc.domain.spec_webhook import check_proxy, check_rate_limit
from acrvpc.prefect_api import api_url

SPEC_REFRESH_S = 15.0  # how often --deployment re-reads the deployment's spec
SPOOL_NAME = "acrvpc-webhook-spool.sqlite3"


class _Unreachable(str):
    """A problem text meaning Prefect did not answer at all (the receiver still starts)."""


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
        return None, (
            f"the Prefect server has no deployment {name}: deploy it first (`acrvpc deploy SPEC --pool "
            f"POOL` makes build-on-push/<spec name>; prefect.yaml's: `prefect --no-prompt deploy --all`)"
        )
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 401:
            return None, (
                f"the Prefect API at {url} refused the credentials (401): set PREFECT_API_AUTH_STRING to "
                f"the server's PREFECT_SERVER_API_AUTH_STRING"
            )
        return None, f"the Prefect API at {url} answered {exc.response.status_code}"
    except Exception as exc:  # noqa: BLE001 - shown to the person
        return None, _Unreachable(f"cannot reach the Prefect API at {url} ({type(exc).__name__})")


def _deployed_spec(name: str, spool: Any) -> tuple[Spec, bool]:
    """``(the spec the deployment name carries, whether Prefect answered)``; exits 2 with the fix when there is none.

    With Prefect unreachable, the spec last read (kept in ``spool``) is used.
    """
    from acrvpc.deploy import spec_of
    from acrvpc.domain.spec import SpecError

    deployment, problem = _read_deployment(name)
    if isinstance(problem, _Unreachable):
        cached = spool.recall(f"spec:{name}")
        if cached is None:
            raise _exit(
                f"{problem}, and no spec of {name} was read before: start the receiver once while "
                f"Prefect answers (or serve a SPEC file)"
            )
        parameters, reachable = json.loads(cached), False
    elif problem:
        raise _exit(problem)
    else:
        parameters, reachable = deployment.parameters, True
    try:
        spec = spec_of(parameters, f"deployment {name}")
    except SpecError as exc:
        raise _exit(str(exc)) from None
    if reachable:
        spool.remember(f"spec:{name}", json.dumps(parameters, default=str))
    return spec, reachable


def _exit(message: str) -> typer.Exit:
    err.print(f"[red]{message}[/]", highlight=False)
    return typer.Exit(2)


class _SpecFollower:
    """Re-reads the deployment's spec every ``every`` seconds and hands it to the receiver (edits take effect)."""

    def __init__(self, name: str, receiver: Any, every: float = SPEC_REFRESH_S) -> None:
        self.name, self.receiver, self.every = name, receiver, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="acrvpc-spec-follower", daemon=True)

    def start(self) -> _SpecFollower:
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
            self.receiver.spool.remember(f"spec:{self.name}", json.dumps(deployment.parameters, default=str))
            if self.receiver.use_spec(spec):
                log.info("the routes of %s changed: now %d route(s)", self.name, len(spec.webhook.routes))


def _credentials(spec: Spec) -> tuple[str | None, str | None]:
    """``(secret, signing token)`` for the receiver; exits 2 with the fix when they are missing or invalid."""
    from acrvpc.cloud.errors import PipelineError
    from tasks.webhook_hook import resolve_signing_secret, resolve_webhook_secret

    try:
        signing = resolve_signing_secret(spec)
        secret = resolve_webhook_secret(spec, required=signing is None)
    except PipelineError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - a Secret block while Prefect is unreachable
        raise _exit(
            f"cannot read the Secret block {spec.webhook.secret_block!r} ({type(exc).__name__}: Prefect "
            f"unreachable?): set ACRVPC_WEBHOOK_SECRET (and ACRVPC_WEBHOOK_SIGNING_SECRET when signing) so "
            f"the receiver can start without Prefect"
        ) from None
    return secret, signing


def _spool_path(spool: Path | None) -> Path:
    from prefect.settings import PREFECT_HOME

    return spool or Path(PREFECT_HOME.value()) / SPOOL_NAME


def _open_spool(spool: Path | None) -> Any:
    """The receiver's spool for ``deliveries`` / ``replay``; exits 2 when there is none."""
    from deployments.webhook_spool import Spool

    path = _spool_path(spool)
    if not path.is_file():
        raise _exit(f"no spool at {path}: give --spool, the file the receiver was started with")
    return Spool(path)


@webhook_app.command(name="serve")
def serve(
    spec_path: Path | None = typer.Argument(
        None, metavar="[SPEC]", help="A spec file whose webhook.routes decide what to build (or --deployment)."
    ),
    deployment: str | None = typer.Option(
        None,
        "--deployment",
        help="Route from the spec this on-push deployment "
        "carries (acrvpc deploy makes build-on-push/"
        "<name>) and start its runs; re-read every "
        f"{SPEC_REFRESH_S:.0f} s.",
    ),
    port: int = typer.Option(8480, help="TCP port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 behind a reverse proxy or LB)."),
    run_spec: str | None = typer.Option(
        None, "--run-spec", help="spec_path passed to the flow runs, as the worker sees it (default: the deployment's)."
    ),
    rate_limit: str | None = typer.Option(
        None,
        "--rate-limit",
        help="Deliveries per source address, e.g. 1000/second (default: webhook.rate_limit, 15000/minute).",
    ),
    trusted_proxy: list[str] | None = typer.Option(
        None,
        "--trusted-proxy",
        help="A reverse proxy's IP or CIDR "
        "whose X-Forwarded-For is "
        "believed (repeatable; default: "
        "webhook.trusted_proxies).",
    ),
    spool: Path | None = typer.Option(
        None,
        "--spool",
        help="SQLite file keeping deliveries until their run "
        "exists (default: $PREFECT_HOME/acrvpc-webhook-"
        "spool.sqlite3). Keep it on persistent disk (a "
        "volume in a container).",
    ),
    max_age: float = typer.Option(
        24 * 3600.0,
        "--max-age",
        min=1.0,
        help="Seconds a delivery may wait for its run (Prefect down or failing) before it is a dead letter.",
    ),
) -> None:
    """Receive GitLab push and tag-push webhooks and start the on-push build deployment."""
    if (spec_path is None) == (deployment is None):
        raise _exit(
            "give either SPEC (a spec file) or --deployment build-on-push/<name> (a spec deployed with "
            "acrvpc deploy), not both and not neither"
        )
    if deployment is not None and run_spec is not None:
        raise _exit("--run-spec: a deployment made by acrvpc deploy carries its spec; drop --run-spec")
    file_spec = load_spec_or_exit(spec_path) if spec_path is not None else None
    try:
        given_limit = check_rate_limit(rate_limit) if rate_limit is not None else None
        given_proxies = [check_proxy(p) for p in trusted_proxy] if trusted_proxy else None
    except ValueError as exc:
        raise _exit(str(exc)) from None
    if not api_url():
        raise _exit(
            "no Prefect API URL: set PREFECT_API_URL (or `prefect config set PREFECT_API_URL=...`), e.g. "
            "http://127.0.0.1:4200/api"
        )
    from deployments.webhook_spool import Spool, SpoolDrainer

    deliveries = Spool(_spool_path(spool))
    if file_spec is not None:
        spec, reachable = file_spec, True
    else:
        assert deployment is not None  # checked above: SPEC or --deployment, exactly one
        spec, reachable = _deployed_spec(deployment, deliveries)
    limit = given_limit or spec.webhook.rate_limit
    proxies = given_proxies if given_proxies is not None else list(spec.webhook.trusted_proxies)
    secret, signing = _credentials(spec)
    target = deployment or spec.webhook.deployment
    if deployment is None:
        _, problem = _read_deployment(target)
        if isinstance(problem, _Unreachable):
            reachable = False
        elif problem:
            raise _exit(problem)
    import uvicorn

    from deployments.webhook import WebhookReceiver, delivery_reporter, deployment_starter, prefect_probe

    start, report = deployment_starter(target), delivery_reporter(target)
    receiver = WebhookReceiver(
        spec,
        secret,
        start,
        spec_path=run_spec,
        signing_secret=signing,
        rate_limit=limit,
        trusted_proxies=proxies,
        spool=deliveries,
        deployment=target,
        max_age=max_age,
        report=report,
        probe=prefect_probe(),
    )
    # queued deliveries, those a restart left behind, and dead letters to report
    drainer = SpoolDrainer(deliveries, start, max_age=max_age, report=report).start()
    follower = _SpecFollower(deployment, receiver).start() if deployment else None
    log = logging.getLogger("acrvpc.webhook")
    log.setLevel(logging.INFO)
    if not log.hasHandlers():  # importing prefect usually configured the root logger already
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    routes = len(spec.webhook.routes)
    auth = "signed deliveries" + (" + X-Gitlab-Token" if secret else "") if signing else "X-Gitlab-Token"
    console.print(
        f"webhook receiver on http://{host}:{port}/hooks/gitlab -> deployment {target} "
        f"({routes} route(s){'; every push will be ignored' if not routes else ''}; {auth}; "
        f"{limit} per source{'; behind ' + ', '.join(proxies) if proxies else ''})",
        highlight=False,
    )
    if not reachable:
        console.print(
            f"the Prefect API at {api_url()} does not answer: deliveries are spooled in {deliveries.path} "
            f"and their runs created when it does",
            highlight=False,
        )
    waiting = deliveries.pending()
    if waiting:
        console.print(
            f"{waiting} delivery(ies) from before were still waiting for their run: creating them now", highlight=False
        )
    sys.stdout.flush()  # the start-up lines reach a log file (systemd, a container) now, not at exit
    try:
        uvicorn.run(receiver.app(), host=host, port=port, log_level="info", proxy_headers=False, server_header=False)
    finally:
        if follower is not None:
            follower.stop()
        drainer.stop()
        deliveries.close()


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


@webhook_app.command(name="deliveries")
def deliveries_command(
    state: str | None = typer.Option(None, "--state", help="Only deliveries in this state: pending, dead or done."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print a JSON list (key, project, ref, sha, state, attempts, last_error, status, run_id, received).",
    ),
    spool: Path | None = typer.Option(
        None, "--spool", help="The receiver's spool file (default: $PREFECT_HOME/acrvpc-webhook-spool.sqlite3)."
    ),
    limit: int = typer.Option(1000, "--limit", min=1, help="At most this many, newest first."),
) -> None:
    """List the receiver's deliveries: key, project, ref, commit, state, attempts, last error, run id."""
    from deployments.webhook_spool import STATES

    if state is not None and state not in STATES:
        raise _exit(f"--state: {state!r} is not a state; give one of {', '.join(STATES)}")
    opened = _open_spool(spool)
    try:
        found = opened.deliveries(state, limit=limit)
    finally:
        opened.close()
    if as_json:
        print(json.dumps([d.as_json() for d in found], indent=2))
        return
    if not found:
        console.print(f"no {state + ' ' if state else ''}deliveries", highlight=False)
        return
    for d in found:
        outcome = f"run {d.run_id}" if d.run_id else (f"{d.status or '-'} {d.last_error}" if d.last_error else "")
        console.print(
            f"{_when(d.received)}  {d.state:<7} {d.key}  {d.project} {d.ref} {d.sha[:12]}  "
            f"attempts {d.attempts}  {outcome}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@webhook_app.command(name="replay")
def replay_command(
    key: str | None = typer.Argument(
        None, metavar="[KEY]", help="The dead letter's key (acrvpc webhook deliveries --state dead)."
    ),
    all_dead: bool = typer.Option(False, "--all-dead", help="Every dead letter."),
    spool: Path | None = typer.Option(
        None, "--spool", help="The receiver's spool file (default: $PREFECT_HOME/acrvpc-webhook-spool.sqlite3)."
    ),
) -> None:
    """Queue dead letters again: the running receiver (or the next one started) creates their runs."""
    if (key is None) == (not all_dead):
        raise _exit("give either KEY (a dead letter's key) or --all-dead, not both and not neither")
    opened = _open_spool(spool)
    try:
        if key is not None:
            found = opened.get(key)
            if found is None:
                raise _exit(f"no delivery {key!r} in {opened.path}: list them with `acrvpc webhook deliveries`")
            if found.state != "dead":
                has = f" (flow run {found.run_id})" if found.run_id else ""
                raise _exit(f"delivery {key!r} is {found.state}{has}: only dead letters are replayed")
        count = opened.replay(key)
    finally:
        opened.close()
    console.print(f"{count} dead letter(s) queued again; the running receiver creates their runs", highlight=False)
