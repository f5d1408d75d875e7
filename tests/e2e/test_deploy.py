"""Deployed runs carry their spec: ``acrvpc deploy`` on a real server, a worker in an empty directory.

``acrvpc deploy examples/sandbox.yaml --pool P`` makes ``vpc-build/demo-build``,
``build-on-push/demo-build`` and ``teardown/demo-build`` with the spec as their ``spec``
parameter and module entrypoints. A process worker started in an empty directory (no checkout,
no spec file; its runs get a temporary directory of their own) runs the full pipeline and an
on-push build started by ``acrvpc webhook serve --deployment build-on-push/demo-build``, which
routes from the same deployment's spec.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from acrvpc.domain.spec import load_spec
from tests.conftest import EXAMPLE_SPEC
from tests.e2e.prefect_server import PREFECT, free_port, stop_group
from tests.e2e.test_webhook import FINAL, SECRET, api, deliver, flow_run, wait_listening, wait_state
from tests.webhook_payloads import PUSH

pytestmark = pytest.mark.e2e

POOL = "acrvpc-deployed"
SPEC = load_spec(EXAMPLE_SPEC)


@pytest.fixture(scope="module")
def deployed(prefect_server, worker_sandbox, tmp_path_factory):
    """The example spec deployed with ``acrvpc deploy`` to its own pool, and a worker in an empty directory."""
    prefect_server.run(*PREFECT, "work-pool", "create", POOL, "--type", "process")
    out = prefect_server.run(sys.executable, "-m", "acrvpc", "deploy", str(EXAMPLE_SPEC), "--pool", POOL, "--json")
    ids = json.loads(out.stdout)["deployments"]
    empty = tmp_path_factory.mktemp("worker-without-checkout")
    worker = prefect_server.spawn(
        *PREFECT,
        "worker",
        "start",
        "--pool",
        POOL,
        "--name",
        "no-checkout",
        log=prefect_server.home / "worker-deployed.log",
        cwd=empty,
        ACRVPC_SANDBOX_URL=worker_sandbox.url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )
    try:
        yield ids, empty
    finally:
        stop_group(worker)
        with api(prefect_server) as client:
            for deployment_id in ids.values():
                client.delete(f"/deployments/{deployment_id}")
            client.delete(f"/work_pools/{POOL}")


def test_deploy_makes_three_deployments_that_carry_the_spec(prefect_server, deployed):
    ids, _ = deployed
    assert set(ids) == {f"vpc-build/{SPEC.name}", f"build-on-push/{SPEC.name}", f"teardown/{SPEC.name}"}
    with api(prefect_server) as client:
        for deployment_id in ids.values():
            body = client.get(f"/deployments/{deployment_id}").raise_for_status().json()
            assert body["parameters"]["spec"]["name"] == SPEC.name
            assert body["entrypoint"].startswith("flows.") and ":" not in body["entrypoint"]
            assert body["path"] is None and not body["pull_steps"]
            # the UI renders a form from the model: the spec's fields are in the parameter schema
            schema = body["parameter_openapi_schema"]
            assert "Spec" in schema["definitions"] and "network" in schema["definitions"]["Spec"]["properties"]


def test_deploying_again_updates_in_place(prefect_server, deployed):
    ids, _ = deployed
    again = prefect_server.run(
        sys.executable, "-m", "acrvpc", "deploy", str(EXAMPLE_SPEC), "--pool", POOL, "--json", "--no-limits"
    )
    assert json.loads(again.stdout)["deployments"] == ids


def test_a_deployed_run_and_an_on_push_run_complete_without_a_spec_file(prefect_server, deployed, worker_sandbox):
    ids, empty = deployed
    assert not [p for p in empty.rglob("*") if p.suffix in (".yaml", ".yml")]  # the worker has no spec file
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    with api(prefect_server) as client:
        run = (
            client.post(
                f"/deployments/{ids[f'vpc-build/{SPEC.name}']}/create_flow_run",
                json={"parameters": {"start_builds": False}},
            )
            .raise_for_status()
            .json()
        )
    done = wait_state(prefect_server, run["id"], FINAL, timeout=180)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert done["parameters"]["spec"]["name"] == SPEC.name  # the run records the exact spec it used
    assert "spec_path" not in done["parameters"]

    port = free_port()
    log = prefect_server.home / "webhook-deployed.log"
    receiver = prefect_server.spawn(
        sys.executable,
        "-m",
        "acrvpc",
        "webhook",
        "serve",
        "--deployment",
        f"build-on-push/{SPEC.name}",
        "--port",
        str(port),
        log=log,
        ACRVPC_WEBHOOK_SECRET=SECRET,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_listening(receiver, url, log)
        answer = deliver(url, PUSH)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["deployment"] == f"build-on-push/{SPEC.name}"
        run_id = body.get("flow_run_id") or _run_of(prefect_server, body["delivery"])
        pushed = wait_state(prefect_server, run_id, FINAL, timeout=180)
        assert pushed["state"]["type"] == "COMPLETED", pushed["state"]
        assert pushed["deployment_id"] == ids[f"build-on-push/{SPEC.name}"]
        assert pushed["parameters"]["spec"]["name"] == SPEC.name and "spec_path" not in pushed["parameters"]
        assert flow_run(prefect_server, run_id)["parameters"]["project"] == PUSH["project"]["path_with_namespace"]
    finally:
        stop_group(receiver)


def _run_of(server, key: str, timeout: float = 60) -> str:
    """The flow run the receiver's drainer created for a queued delivery (by its idempotency key)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with api(server) as client:
            runs = client.post("/flow_runs/filter", json={"limit": 200}).raise_for_status().json()
        for run in runs:
            if run.get("idempotency_key") == f"gitlab:{key}":
                return run["id"]
        time.sleep(0.2)
    raise AssertionError(f"no flow run for delivery {key}")


def test_a_bad_spec_or_pool_creates_nothing(prefect_server, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_SPEC.read_text().replace("vpc_id: vpc-", "vpc_id: abc-"))
    with api(prefect_server) as client:
        before = client.post("/deployments/count", json={}).raise_for_status().json()
    for args, field in (
        ([str(bad), "--pool", POOL], "network.vpc_id"),
        ([str(EXAMPLE_SPEC), "--pool", "no-such-pool"], "--pool"),
        ([str(EXAMPLE_SPEC), "--pool", POOL, "--cron", "0 2 * *"], "--cron"),
    ):
        proc = prefect_server.run_unchecked(sys.executable, "-m", "acrvpc", "deploy", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert field in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    with api(prefect_server) as client:
        assert client.post("/deployments/count", json={}).raise_for_status().json() == before
