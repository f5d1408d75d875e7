"""Session fixtures for PostgreSQL, the real Prefect server on it, its deployments and a process worker."""

from __future__ import annotations

import secrets
import sys
import warnings

import pytest

from acrvpc.sandbox import SandboxServer
from tests.e2e.prefect_server import PREFECT, PostgresCluster, PrefectServer, free_port, postgres_bindir

POOL = "acr-vpc-build"
SCHEDULER_LOOP_SECONDS = "2"  # the scheduler service's loop (default 60 s): scheduled runs appear quickly
# The loop of the service that fails a suspended run whose pause timed out (default 5 s): a console step
# nobody answers fails within a second of its pause_timeout_minutes, not up to 5 s after it.
PAUSE_EXPIRATIONS_LOOP_SECONDS = "1"
# How often the event persister writes the events it has (default 5 s, or at 20 events): an event a test
# looks for (acrvpc.delivery.failed) is on the server within a second of being sent.
EVENT_PERSISTER_FLUSH_INTERVAL = "1"


def _say(request: pytest.FixtureRequest, line: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line, yellow=True, bold=True)


@pytest.fixture(scope="session")
def worker_sandbox():
    """A sandbox shared by the worker's flow runs (tests reset it with ``world.reset()``)."""
    with SandboxServer() as sandbox:
        sandbox.world.clock.set_scale(20.0)
        yield sandbox


@pytest.fixture(scope="session")
def postgres(request):
    """A throwaway PostgreSQL cluster for the session's Prefect server, or None (SQLite) without the binaries."""
    bindir = postgres_bindir()
    if bindir is None:
        message = (
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): the e2e Prefect server runs "
            "on SQLite, NOT on PostgreSQL as in production. Install them: apt-get install -y postgresql "
            "(.ci/run does)"
        )
        _say(request, f"!!! {message}")
        warnings.warn(message, UserWarning, stacklevel=1)
        yield None
        return
    cluster = PostgresCluster(bindir).start()
    _say(request, f"e2e Prefect server database: PostgreSQL {cluster.version} on 127.0.0.1:{cluster.port}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory, postgres):
    """``prefect server start`` on a free loopback port (on PostgreSQL), with prefect.yaml's deployments applied."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    # The API refuses clients without the auth string (PREFECT_SERVER_API_AUTH_STRING), as in production;
    # the worker, CLI and receiver subprocesses get it as PREFECT_API_AUTH_STRING (PrefectServer.env).
    server = PrefectServer(
        home=home,
        port=free_port(),
        log=home / "server.log",
        database_url=postgres.url if postgres else None,
        auth_string=f"acrvpc-e2e:{secrets.token_urlsafe(18)}",
        server_env={
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": SCHEDULER_LOOP_SECONDS,
            "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": PAUSE_EXPIRATIONS_LOOP_SECONDS,
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": EVENT_PERSISTER_FLUSH_INTERVAL,
        },
    )
    try:
        server.start()
        server.run(*PREFECT, "work-pool", "create", POOL, "--type", "process")
        server.run(*PREFECT, "--no-prompt", "deploy", "--all")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def process_worker(prefect_server, worker_sandbox):
    """An acrvpc-process worker polling every second, its flow runs pointed at the worker sandbox.

    The project's worker type (Prefect's process worker, each run its own process, forked from a
    pre-imported interpreter: README "Faster starts"), so the UI, cancel, retry and webhook tests
    exercise it too; Prefect's own process worker (``prefect worker start``, the README's first
    command) runs the runs of test_deploy, test_console_suspend, test_worker_crash, test_api_auth,
    test_wheel and the multi-host tests.
    """
    log = prefect_server.home / "worker.log"
    proc = prefect_server.spawn(
        sys.executable,
        "-m",
        "acrvpc.warm_worker",
        "--pool",
        POOL,
        log=log,
        ACRVPC_SANDBOX_URL=worker_sandbox.url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )
    yield proc
