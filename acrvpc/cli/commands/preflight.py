"""``acrvpc preflight SPEC [--json] [--fix]``: every prerequisite checked, nothing created.

Runs :func:`tasks.preflight.run_preflight` with clients from :mod:`acrvpc.cloud.clients` (the real cloud, or the
sandbox named by ``ACRVPC_SANDBOX_URL``); no Prefect flow and no Prefect server. Exit codes: 0 when no
check fails (warnings and skips allowed), 1 when a check fails, 2 when the spec is invalid or no usable
credentials are found (resolved once, before any API call: one message naming every way to give them).
``--json`` prints exactly ``{"checks": [{"id", "result", "detail", "fix"}]}`` on stdout (anything else
goes to stderr). ``--fix`` applies the one automatic fix, :func:`tasks.preflight_fix.fix_gitlab_ingress`,
when ``gitlab.sg_ingress`` fails, says what it did, and checks again.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import typer
from rich.table import Table

from acrvpc.cli.common import app, console, err, load_spec_or_exit

_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def checks_table(outcome, title: str) -> Table:
    """The checks as a rich table: check, result, detail, fix (results coloured)."""
    table = Table(title=title, show_lines=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    table.add_column("fix", overflow="fold", ratio=2)
    for c in outcome.checks:
        style = _STYLE.get(c.result, "")
        table.add_row(c.id, f"[{style}]{c.result}[/]", c.detail, c.fix or "")
    return table


def summary_line(outcome, seconds: float) -> str:
    """``18 checks: 17 pass, 1 fail, 0 warn, 0 skip (0.4 s)``."""
    counts = {r: sum(1 for c in outcome.checks if c.result == r) for r in ("pass", "fail", "warn", "skip")}
    return f"{len(outcome.checks)} checks: " + ", ".join(f"{n} {r}" for r, n in counts.items()) + f" ({seconds:.1f} s)"


def clients_or_exit(spec):
    """The spec's cloud clients; no usable credentials (a missing block, nothing in the chain) exits 2.

    The SDKs' model classes load as they are used (:func:`acrvpc.cloud.sdk_models.lazy_models`): a command
    needs some twenty of the 4259, which would otherwise be half of the CPU time of importing the SDKs.
    """
    from acrvpc.cloud import clients as cloud
    from acrvpc.cloud.sdk_models import lazy_models

    lazy_models()

    try:
        return cloud.cloud_clients(spec)
    except cloud.CredentialsError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None


def _apply_fix(clients, spec, outcome, say) -> list[str] | None:
    """Run the automatic fix when gitlab.sg_ingress fails: the writes it made, or ``None`` when it did not run."""
    from acrvpc.cloud.errors import PipelineError, explain
    from tasks.preflight_fix import FIX_CHECK_ID, fix_gitlab_ingress

    failing = {c.id for c in outcome.failures}
    if FIX_CHECK_ID not in failing:
        say(
            f"--fix: nothing to fix automatically ({FIX_CHECK_ID} does not fail"
            + ("; apply the fix shown for each failing check" if failing else "")
            + ")"
        )
        return None
    try:
        done = fix_gitlab_ingress(clients.ecs, spec)
    except PipelineError as exc:
        say(f"--fix could not fix {FIX_CHECK_ID}: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - an SDK error, shown with its code
        say(f"--fix could not fix {FIX_CHECK_ID}: {explain(exc)}")
        return None
    for line in done:
        say(f"--fix: {line}")
    say("--fix: checking again" if done else f"--fix: {FIX_CHECK_ID} needs no rule now; checking again")
    return done


@app.command(name="preflight")
def preflight_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The YAML spec to check."),
    as_json: bool = typer.Option(False, "--json", help='Print {"checks": [{"id","result","detail","fix"}]}.'),
    fix: bool = typer.Option(
        False,
        "--fix",
        help="Add the missing 100.104.0.0/16 ingress rule to GitLab's "
        "security group (the only automatic fix), then check again.",
    ),
) -> None:
    """Check every prerequisite of a VPC build for SPEC, from the cloud's own state. Creates nothing but --fix's rule."""
    spec = load_spec_or_exit(spec_path)
    clients = clients_or_exit(spec)  # credentials first: without them nothing else is loaded or asked
    from acrvpc.cloud import clients as cloud
    from tasks.preflight import run_preflight

    gitlab = functools.partial(cloud.gitlab_for, spec)  # a missing token becomes a failed check
    started = time.monotonic()
    outcome = run_preflight(clients, spec, gitlab=gitlab)
    fixed: list[str] = []
    if fix:

        def say(text: str) -> None:
            (err if as_json else console).print(text, highlight=False, markup=False)

        done = _apply_fix(clients, spec, outcome, say)
        if done is not None:
            fixed, started = done, time.monotonic()
            outcome = run_preflight(clients, spec, gitlab=gitlab)
    seconds = time.monotonic() - started
    if as_json:
        print(json.dumps({"checks": [c.model_dump(include={"id", "result", "detail", "fix"}) for c in outcome.checks]}))
    else:
        console.print(checks_table(outcome, f"preflight: {spec.name} ({spec_path})"))
        verdict = "[green]passed[/]" if outcome.passed else f"[bold red]{len(outcome.failures)} failed[/]"
        made = f"--fix made {len(fixed)} write(s)" if fixed else "nothing was created"
        console.print(f"preflight {verdict}: {summary_line(outcome, seconds)}; {made}")
    raise typer.Exit(0 if outcome.passed else 1)
