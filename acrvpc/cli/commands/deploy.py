"""``acrvpc deploy SPEC --pool POOL``: the spec's deployments, carrying the spec (:mod:`acrvpc.deploy`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from acrvpc.cli.common import app, console, err, load_spec_or_exit

HELP = (
    "Create or update the spec's three deployments on the Prefect server: vpc-build/<name> (optionally on a "
    "cron schedule), build-on-push/<name> (what `acrvpc webhook serve --deployment build-on-push/<name>` "
    "starts) and teardown/<name>. Each carries the whole spec as its `spec` parameter, so workers need the "
    "package but no spec file; run it again after editing the spec. Also creates the shared API rate limits "
    "of the spec's region (--no-limits to leave them). Checks everything first and creates nothing when "
    "something is wrong (exit 2)."
)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]{message}[/]", highlight=False)
    return typer.Exit(2)


def _check_pool(pool: str, url: str) -> None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(pool)
    except ObjectNotFound:
        raise _fail(
            f"--pool: no work pool {pool!r} on this Prefect server; create it first, e.g. "
            f"prefect work-pool create {pool} --type process"
        ) from None
    except PrefectHTTPStatusError as exc:
        hint = (
            ": set PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING"
            if exc.response.status_code == 401
            else ""
        )
        raise _fail(f"the Prefect API at {url} answered {exc.response.status_code}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - unreachable server: shown to the person, nothing created
        raise _fail(
            f"cannot reach the Prefect API at {url} ({type(exc).__name__}); start the server or fix PREFECT_API_URL"
        ) from None


@app.command(help=HELP)
def deploy(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The YAML spec to deploy."),
    pool: str = typer.Option(
        ...,
        "--pool",
        help="The work pool whose workers run the deployments "
        "(e.g. acr-vpc-build; create it with prefect work-pool create).",
    ),
    cron: str | None = typer.Option(None, "--cron", help="Schedule of vpc-build/<name>, e.g. '0 2 * * *'."),
    timezone: str = typer.Option("UTC", "--timezone", help="Time zone of --cron, e.g. Asia/Shanghai."),
    image: str | None = typer.Option(None, "--image", help="Container image (Docker or Kubernetes pools)."),
    queue: str | None = typer.Option(None, "--queue", help="A work queue of the pool."),
    env: list[str] = typer.Option(
        [],
        "--env",
        help="NAME=VALUE set in the runs' environment (repeatable); never a secret: use blocks for credentials.",
    ),
    limits: bool = typer.Option(True, "--limits/--no-limits", help="Create the shared API rate limits too."),
    as_json: bool = typer.Option(False, "--json", help="Print {deployment: id} as JSON."),
) -> None:
    """Deploy SPEC's vpc-build, build-on-push and teardown deployments (see :data:`HELP`)."""
    spec = load_spec_or_exit(spec_path)
    if cron is not None:
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        try:
            CronSchedule(cron=cron, timezone=timezone)
        except ValidationError as exc:
            field = "--timezone" if exc.errors()[0]["loc"] == ("timezone",) else "--cron"
            raise _fail(
                f"{field}: {cron if field == '--cron' else timezone!r} is not valid; write a cron "
                f"expression of five fields (e.g. '0 2 * * *') and an IANA time zone (e.g. Asia/Shanghai)"
            ) from None
    bad_env = [item for item in env if "=" not in item or not item.split("=", 1)[0]]
    if bad_env:
        raise _fail(f"--env: {bad_env[0]!r} is not NAME=VALUE; write e.g. --env ACRVPC_QPS_ECS=10")
    from acrvpc.prefect_api import api_url

    url = api_url()
    if not url:
        raise _fail(
            "no Prefect API URL: set PREFECT_API_URL (or `prefect config set PREFECT_API_URL=...`) to your "
            "Prefect server, e.g. http://127.0.0.1:4200/api"
        )
    _check_pool(pool, url)
    job_variables: dict[str, Any] = {"env": dict(item.split("=", 1) for item in env)} if env else {}
    from acrvpc.deploy import deploy_spec

    ids = deploy_spec(
        spec, pool=pool, cron=cron, timezone=timezone, image=image, job_variables=job_variables, work_queue=queue
    )
    made_limits: dict[str, Any] = {}
    if limits:
        from acrvpc.cloud.ratelimit import ensure_limits

        made_limits = ensure_limits(region=spec.region)
    if as_json:
        print(json.dumps({"deployments": ids, "limits": made_limits}))
        return
    for name, deployment_id in ids.items():
        console.print(f"deployment [bold]{name}[/] ({deployment_id}) -> pool {pool}", highlight=False)
    for name, limit in made_limits.items():
        console.print(f"rate limit [bold]{name}[/]: {limit}", highlight=False)
    console.print(f"GitLab pushes: acrvpc webhook serve --deployment build-on-push/{spec.name}", highlight=False)
