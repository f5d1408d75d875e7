"""The ``acrvpc`` command.

``demo`` runs the whole pipeline against an in-process sandbox on Prefect's embedded default;
``run SPEC`` runs it for a spec (real cloud, or a sandbox when ``ACRVPC_SANDBOX_URL`` is set);
``sandbox`` serves the sandbox standalone. More commands live in :mod:`acrvpc.cli.commands`.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Python's cyclic collector scans every object an import creates, again and again, and all of them once more at
# the interpreter's exit: importing the three SDK clients and python-gitlab takes a third less CPU with it paused
# and the loaded objects frozen (issue 18). It is paused while this module loads the CLI (restored at its end)
# and, in main(), for a short-lived read-only command (_PAUSED_COMMANDS), whose objects are frozen before the exit.
_COLLECTING = gc.isenabled()
gc.disable()

import typer  # noqa: E402 - after the collector's pause

from acrvpc.cli.common import app, console, err, load_spec_or_exit  # noqa: E402

# A copy of examples/sandbox.yaml shipped in the package (a unit test keeps them equal): the demo runs from a
# wheel installed anywhere, whatever the working directory.
DEFAULT_SPEC = Path(__file__).with_name("demo_spec.yaml")
# The demo's sandbox clock runs 20 times faster than real time (said when the sandbox starts): a build's 19
# sandbox seconds (clone, build, push) take about 1 s, so its second status poll (1 s after its first, the spec's
# build.poll_seconds) sees it end; at 10 the third did (2.5 s), and the demo took 1.5 s longer.
DEMO_TIME_SCALE = 20.0


def credentials_or_exit(spec) -> None:
    """Resolve the spec's Alibaba Cloud credentials once, before any API call; none usable exits 2 with the
    one message naming every way to give them (:func:`acrvpc.cloud.clients.default_chain`)."""
    from acrvpc.cloud import clients as cloud

    try:
        cloud.resolve_access_key(spec.credentials.alibaba_block)
    except cloud.CredentialsError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None


class Output:
    """How a command shows a run: ``live`` (progress rows and build log lines), ``quiet`` or ``json``."""

    def __init__(self, quiet: bool = False, as_json: bool = False) -> None:
        if quiet and as_json:
            err.print("[red]--quiet and --json: choose one[/]", highlight=False)
            raise typer.Exit(2)
        self.quiet, self.json = quiet, as_json

    @property
    def live(self) -> bool:
        return not (self.quiet or self.json)

    def say(self, message: str) -> None:
        """A line for people (nothing with --quiet or --json)."""
        if self.live:
            console.print(message, highlight=False)


def _run_flow(spec_path: Path, start_builds: bool, output: Output) -> tuple[bool, dict[str, Any], str, str]:
    """Run the flow in this process, shown as ``output`` says.

    Returns:
        (ok, summary, error message, flow run id). The summary is the flow's return value, or for a
        failed run what the run reported before it failed (stages and builds).
    """
    from acrvpc.cli.live import live_run
    from flows.vpc_build import vpc_build

    with live_run(console, quiet=not output.live) as view:
        state = vpc_build(spec_path=str(spec_path), start_builds=start_builds, return_state=True)
    run_id = str(state.state_details.flow_run_id or "")
    if state.is_completed():
        return True, state.result(), "", run_id
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - shown to the person
        message = str(exc)
    else:
        message = state.message or state.name or ""
    return False, view.partial_summary(load_spec_or_exit(spec_path).name, run_id), message, run_id


def _report(ok: bool, summary: dict[str, Any], message: str, run_id: str, output: Output) -> None:
    """The end of a run: the summary tables (or JSON), then the error if it failed."""
    if output.json:
        print(json.dumps({"ok": ok, "error": message or None, **summary, "flow_run_id": run_id}, default=str))
        return
    if output.live:
        from acrvpc.cli.report import print_summary

        print_summary(summary, console)
    if not ok:
        err.print(f"[red]failed:[/] {message}", highlight=False)


@app.command()
def demo(
    spec: Path | None = typer.Option(
        None,
        help="Spec to run (default: the packaged copy of examples/sandbox.yaml, "
        "which matches the sandbox's default world).",
    ),
    time_scale: float = typer.Option(
        DEMO_TIME_SCALE, help="Sandbox seconds per real second: a build takes 19 sandbox s, an ENI attaches in 2."
    ),
    rerun: bool = typer.Option(False, "--rerun", help="Run the flow a second time to show it writes nothing new."),
    link_mode: str | None = typer.Option(
        None,
        "--link-mode",
        help="api | console (default: the spec's). console: "
        "the run pauses for the registry console's steps, and a stand-in "
        "operator does them on the sandbox and resumes it.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display: only errors (the exit code says it)."),
    as_json: bool = typer.Option(False, "--json", help="Print each run's summary as one JSON line, nothing else."),
) -> None:
    """Run the whole pipeline against an in-process sandbox (no cloud, no server to start)."""
    from contextlib import ExitStack

    output = Output(quiet, as_json)
    if link_mode not in (None, "api", "console"):
        err.print(f"[red]--link-mode {link_mode}: choose api or console[/]", highlight=False)
        raise typer.Exit(2)
    spec = spec or DEFAULT_SPEC
    import gc

    # Python's cyclic collector scans every object the imports create, again and again: 0.25 of the 1.35 CPU s of
    # importing the flow (Prefect, the SDKs), and 0.4 s of the interpreter's exit. Those objects live as long as
    # the process: the collector is paused while they load, then they are frozen (never scanned again).
    gc.disable()
    with ExitStack() as stack:
        stack.callback(gc.freeze)  # last: the run's objects too, before the interpreter's exit
        stack.callback(gc.enable)
        server = _start_prefect_server(output, stack)  # first: it loads on the other core meanwhile
        _demo(
            spec,
            loaded=load_spec_or_exit(spec),
            server=server,
            stack=stack,
            time_scale=time_scale,
            rerun=rerun,
            link_mode=link_mode,
            output=output,
        )


def _start_prefect_server(output: Output, stack: Any, ends: str = "the demo ends") -> Any:
    """Prefect's server for the demo or a run, started now on a ready database (:mod:`acrvpc.cli.demo_server`), or
    None when a Prefect setting names an API URL or a database (Prefect's settings then decide)."""
    from acrvpc.cli import demo_server
    from acrvpc.lazy_prefect import api_url_surely_unset

    database = demo_server.default_database() if api_url_surely_unset() else None
    if database is None:
        return None
    how = demo_server.seed_database(database)
    server = demo_server.DemoServer()
    stack.callback(server.stop)
    os.environ["PREFECT_API_URL"] = server.url
    output.say(
        f"[bold]prefect[/] starting a local server for the run on {server.url} ({how}: {database}); it stops "
        f"when {ends}"
    )
    return server


def _demo(
    spec: Path,
    loaded: Any,
    server: Any,
    stack: Any,
    time_scale: float,
    rerun: bool,
    link_mode: str | None,
    output: Output,
) -> None:
    import gc

    from acrvpc.sandbox import SandboxServer

    with SandboxServer() as sandbox:
        sandbox.world.clock.set_scale(time_scale)
        os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
        output.say(
            f"[bold]sandbox[/] listening on {sandbox.url} (Alibaba Cloud RPC + GitLab API v4); its clock "
            f"runs {time_scale:g}x faster than real time"
        )
        import flows.vpc_build  # noqa: F401 - Prefect and the flow load here, while the server starts

        gc.freeze()  # see demo()
        gc.enable()
        if server is not None:
            started = time.monotonic()
            server.wait_ready()
            output.say(f"[bold]prefect[/] server ready (waited {time.monotonic() - started:.1f} s for it)")
        operator, shown = None, 0
        if link_mode is not None and link_mode != loaded.link.mode.value:
            spec = _spec_copy(spec, link_mode, stack)
            loaded = load_spec_or_exit(spec)
        if loaded.link.mode.value == "console":
            operator = _console_operator(sandbox, loaded, spec, stack, output)
        runs = 2 if rerun else 1
        for attempt in range(1, runs + 1):
            since = len(sandbox.world.calls.list())
            with _no_heartbeats(server is not None):
                ok, summary, message, run_id = _run_flow(spec, True, output)
            calls = sandbox.world.calls.list(since)
            writes = [c["action"] for c in calls if c["writes"]]
            if operator is not None:
                for line in operator.actions[shown:]:
                    output.say(f"[bold]console operator[/] (stand-in): {line}")
                shown = len(operator.actions)
            if not ok and operator is not None and operator.errors:
                err.print(f"console operator: {operator.errors[-1]}", highlight=False)
            _report(
                ok, {**summary, "run": attempt, "api_calls": len(calls), "writes": len(writes)}, message, run_id, output
            )
            if not ok:
                if output.live:
                    _where(run_id, local=server is not None)
                raise typer.Exit(1)
            output.say(
                f"run {attempt}: {len(calls)} API calls, {len(writes)} writes "
                f"({', '.join(sorted(set(writes))) or 'none'})"
            )
        if output.live:
            _where(run_id, local=server is not None)


def _no_heartbeats(own_server: bool) -> Any:
    """On the CLI's own local server (``demo``, ``run``), flow runs send no heartbeats: they tell a server's
    automations that a run's process died (:mod:`acrvpc.automations`), and that server has none and stops with
    this process. Prefect's heartbeat thread sleeps in 1 s steps and the end of a run waits for it (0.3-0.6 s
    per demo, measured)."""
    from contextlib import nullcontext

    if not own_server:
        return nullcontext()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _spec_copy(spec: Path, link_mode: str, stack: Any) -> Path:
    """A temporary copy of the spec with ``link.mode`` set (console: a pause timeout of at most 5 minutes)."""
    import tempfile

    import yaml

    data = yaml.safe_load(spec.read_text())
    link = data.setdefault("link", {}) or {}
    data["link"] = link
    link["mode"] = link_mode
    if link_mode == "console":
        link["pause_timeout_minutes"] = min(float(link.get("pause_timeout_minutes", 5)), 5.0)
    handle, name = tempfile.mkstemp(prefix=f"{spec.stem}-{link_mode}-", suffix=".yaml")
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(data, out, sort_keys=False)
    stack.callback(os.unlink, name)
    return Path(name)


def _console_operator(sandbox: Any, spec: Any, spec_path: Path, stack: Any, output: Output) -> Any:
    """Unbind the sandbox's GitLab account (so both console steps show) and start the stand-in operator."""
    from acrvpc.cli.console_operator import ConsoleOperator

    with sandbox.world.lock:
        sandbox.world.cr.unbind_code_source(spec.instance_id, "GITLAB")
    output.say(
        "console mode: the run pauses for the registry console's Manage Link and Bind Account; a stand-in "
        "operator does them on the sandbox and resumes the run (with a real account: the Prefect UI's "
        "Resume, or acrvpc resume RUN_ID)"
    )
    return stack.enter_context(ConsoleOperator(sandbox.url, spec, str(spec_path), poll_seconds=0.5))


def _where(run_id: str, local: bool = False) -> None:
    """Where the run is recorded; ``local``: on the CLI's own local server, whose database is in PREFECT_HOME."""
    from acrvpc.prefect_api import api_url

    api = None if local else api_url()
    if api:
        console.print(f"flow run {run_id} is recorded on {api}")
        return
    import shlex

    from acrvpc.cli.shell import command

    home = os.environ.get("PREFECT_HOME")
    prefix = f"PREFECT_HOME={shlex.quote(home)} " if home else ""
    prefect = prefix + command("prefect")  # runs as printed: .venv/bin/prefect when the venv is not active
    console.print(
        f"flow run [bold]{run_id}[/] is recorded in {home or '~/.prefect'}/prefect.db. To see it in the "
        f"Prefect UI:\n  {prefect} server start   # then open "
        f"http://127.0.0.1:4200/v2/runs/flow-run/{run_id}\nor list runs with: {prefect} flow-run ls",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def run(
    spec: Path = typer.Argument(..., help="The YAML spec to converge and build."),
    no_builds: bool = typer.Option(False, "--no-builds", help="Converge the setup only; start no builds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live display: only errors (the exit code says it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as one JSON object, nothing else."),
) -> None:
    """Run the pipeline for SPEC (the real cloud, or the sandbox named by ACRVPC_SANDBOX_URL).

    Shows the stages and builds live, streams the build logs, and ends with the summary tables.
    Exit code 0 when everything converged and every build succeeded, 1 otherwise, 2 for a bad spec or no
    usable credentials (checked before anything starts).
    """
    from contextlib import ExitStack

    output = Output(quiet, as_json)
    credentials_or_exit(load_spec_or_exit(spec))
    with ExitStack() as stack:
        # Without a Prefect API URL: the demo's local server, started now on a ready database, instead of
        # Prefect's embedded one, which migrates a new PREFECT_HOME's database first (~12 s without a word).
        server = _start_prefect_server(output, stack, ends="the run ends")
        if server is not None:
            server.wait_ready()
        with _no_heartbeats(server is not None):
            ok, summary, message, run_id = _run_flow(spec, not no_builds, output)
    _report(ok, summary, message, run_id, output)
    if output.live:
        _where(run_id, local=server is not None)
    if not ok:
        raise typer.Exit(1)


@app.command()
def sandbox(
    port: int = typer.Option(8470, help="TCP port on 127.0.0.1 (0 picks a free one)."),
    scenario: Path | None = typer.Option(None, help="Scenario YAML; default: the built-in default world."),
    time_scale: float | None = typer.Option(None, help="Sandbox seconds per real second."),
    latency_ms: float = typer.Option(0.0, help="Latency added to every call."),
    qps: float = typer.Option(
        0.0, help="Quota per product (calls per real second; over it: Throttling.User, GitLab 429). 0 = none."
    ),
    qps_per_action: float = typer.Option(0.0, help="Quota per action of a product, likewise. 0 = none."),
    error_rate: float = typer.Option(
        0.0, help="Share of calls answered 5xx (ServiceUnavailable/InternalError; GitLab 502/503), 0 to 1."
    ),
    drop_rate: float = typer.Option(0.0, help="Share of calls whose connection is closed without an answer."),
    seed: int | None = typer.Option(None, help="Seed of the random faults, for a reproducible sequence."),
    ram_policy: Path | None = typer.Option(
        None,
        "--ram-policy",
        help="RAM policy JSON (e.g. from `acrvpc policy`) every call must satisfy: Forbidden.RAM / NoPrivilege.",
    ),
) -> None:
    """Serve the sandbox on loopback until interrupted (fault injection: see /_sandbox/faults)."""
    from acrvpc.cli.commands.policy import read_ram_policy_or_exit
    from acrvpc.sandbox import SandboxServer

    policy = read_ram_policy_or_exit(ram_policy)

    if scenario is not None and not scenario.exists():
        err.print(f"[red]--scenario: no such file {scenario}[/]")
        raise typer.Exit(2)
    from acrvpc.sandbox.core.faults import Faults

    faults = {
        "qps": qps,
        "qps_per_action": qps_per_action,
        "error_rate": error_rate,
        "drop_rate": drop_rate,
        "seed": seed,
    }
    try:
        Faults().update(faults)  # check before listening
    except ValueError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    try:
        server = SandboxServer(scenario, port=port, ram_policy=policy)
    except OSError as exc:
        err.print(f"[red]--port {port}: cannot listen ({exc.strerror}); pick another port or 0[/]")
        raise typer.Exit(2) from None
    if time_scale is not None:
        server.world.clock.set_scale(time_scale)
    server.world.faults.latency_ms = latency_ms
    server.world.faults.update(faults)
    console.print(
        f"sandbox listening on {server.url}\n  export ACRVPC_SANDBOX_URL={server.url}\n"
        f"  admin: {server.url}/_sandbox/calls  (Ctrl-C to stop)"
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


from acrvpc.cli import commands  # noqa: E402 - after this module's own commands: --help lists them first

commands.load_all()
if _COLLECTING:
    gc.enable()

# Read-only commands that end within seconds: the collector stays paused while they load the SDKs and run (a few
# MB of garbage at most), and what they loaded is frozen before the exit, so the interpreter's last collection
# skips it. Every other command (a flow run, a server, the demo's own handling) runs with the collector as usual.
_PAUSED_COMMANDS = frozenset({"preflight", "plan", "policy"})


def main() -> None:
    """The ``acrvpc`` console entry point: the app, with a bad ``ACRVPC_*`` setting said in one line (exit 2)."""
    paused = len(sys.argv) > 1 and sys.argv[1] in _PAUSED_COMMANDS and gc.isenabled()
    if paused:
        gc.disable()
    from acrvpc.settings import SettingsError

    try:
        app()
    except SettingsError as exc:  # raised wherever a command first reads the settings
        err.print(f"[red]{exc}[/]", highlight=False)
        sys.exit(2)
    finally:
        if paused:
            gc.freeze()
            gc.enable()


if __name__ == "__main__":  # pragma: no cover
    main()
