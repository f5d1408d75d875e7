"""A worker killed with SIGKILL mid-run: a new run of the same spec converges, no duplicate, no orphan."""

from __future__ import annotations

import os
import signal
import time

import pytest

from acrvpc.cloud import clients as cloud
from acrvpc.domain.spec import load_spec
from tasks.teardown import find_link_resources
from tests.conftest import EXAMPLE_SPEC
from tests.e2e.prefect_server import PREFECT
from tests.e2e.test_ui_retry import api, start_run, wait_final

pytestmark = pytest.mark.e2e

POOL = "acr-vpc-build-crash"  # its own pool and worker, so killing them leaves the session's worker alone
DEPLOYMENT = "vpc-build/crash"


@pytest.fixture(scope="module")
def crash_deployment(prefect_server):
    prefect_server.run(*PREFECT, "work-pool", "create", POOL, "--type", "process")
    prefect_server.run(
        *PREFECT,
        "--no-prompt",
        "deploy",
        "flows/vpc_build.py:vpc_build",
        "--name",
        "crash",
        "--pool",
        POOL,
        "--param",
        "spec_path=examples/sandbox.yaml",
        "--param",
        "start_builds=false",
    )
    return DEPLOYMENT


def spawn_worker(prefect_server, worker_sandbox, name: str):
    return prefect_server.spawn(
        *PREFECT,
        "worker",
        "start",
        "--pool",
        POOL,
        "--name",
        name,
        log=prefect_server.home / f"{name}.log",
        ACRVPC_SANDBOX_URL=worker_sandbox.url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )


def test_new_run_after_a_killed_worker_converges_without_duplicates(
    prefect_server, worker_sandbox, crash_deployment, monkeypatch
):
    monkeypatch.setenv("ACRVPC_SANDBOX_URL", worker_sandbox.url)
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(0.2)  # slow ENI attach: the kill lands while the run waits for InUse
    worker = spawn_worker(prefect_server, worker_sandbox, "doomed")
    run_id = start_run(prefect_server, crash_deployment)
    deadline = time.monotonic() + 120
    while not any(c["action"] == "CreateNetworkInterfacePermission" for c in world.calls.list()):
        assert time.monotonic() < deadline, "the run never reached the ENI stage"
        time.sleep(0.2)
    # When the worker (and the flow run process it started) is killed mid-run
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    with api(prefect_server) as client:
        assert client.get(f"/flow_runs/{run_id}").json()["state"]["type"] != "COMPLETED"
    # then a new worker and a new run of the same spec converge
    world.clock.set_scale(20.0)
    spawn_worker(prefect_server, worker_sandbox, "survivor")
    second = start_run(prefect_server, crash_deployment)
    assert wait_final(prefect_server, second)["type"] == "COMPLETED"
    # with exactly one security group and one ENI for the link, and none outside it
    spec = load_spec(EXAMPLE_SPEC)
    found = find_link_resources(cloud.cloud_clients(spec).ecs, spec)
    assert len(found["security_groups"]) == 1 and len(found["network_interfaces"]) == 1, found
    created = [
        c
        for c in world.calls.list()
        if c["status"] == 200 and c["action"] in ("CreateSecurityGroup", "CreateNetworkInterface")
    ]
    # (and the killed run, Crashed, rolled nothing back: a stopped process keeps what it made for the rerun)
    writes = [c["action"] for c in world.calls.list() if c["action"].startswith(("Create", "Delete"))]
    assert [c["action"] for c in created] == ["CreateSecurityGroup", "CreateNetworkInterface"], writes
