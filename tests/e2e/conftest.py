"""Session fixtures for the real Prefect server, its deployments and a process worker."""

from __future__ import annotations

import pytest

from acrvpc.sandbox import SandboxServer
from tests.e2e.prefect_server import PrefectServer, free_port

POOL = "acr-vpc-build"


@pytest.fixture(scope="session")
def worker_sandbox():
    """A sandbox shared by the worker's flow runs (tests reset it with ``world.reset()``)."""
    with SandboxServer() as sandbox:
        sandbox.world.clock.set_scale(20.0)
        yield sandbox


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """``prefect server start`` on a free loopback port, with prefect.yaml's deployments applied."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    server = PrefectServer(home=home, port=free_port(), log=home / "server.log").start()
    try:
        server.run("prefect", "work-pool", "create", POOL, "--type", "process")
        server.run("prefect", "--no-prompt", "deploy", "--all")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def process_worker(prefect_server, worker_sandbox):
    """A process worker polling every second, its flow runs pointed at the worker sandbox."""
    log = prefect_server.home / "worker.log"
    proc = prefect_server.spawn("prefect", "worker", "start", "--pool", POOL, log=log,
                                ACRVPC_SANDBOX_URL=worker_sandbox.url, PREFECT_WORKER_QUERY_SECONDS="1",
                                PREFECT_WORKER_PREFETCH_SECONDS="1")
    yield proc
