"""A failed run retried the way the Prefect UI's Retry button does resumes at the failure.

Runs on a real ``prefect server start`` with a process worker (tests/e2e/conftest.py), through
the deployment that prefect.yaml declares.
"""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

UI_RETRY_BODY = {
    "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
    "force": True,
}  # what the v2 UI posts (prefect-notes §4)
ECS_WRITES = {
    "CreateSecurityGroup",
    "ModifySecurityGroupPolicy",
    "AuthorizeSecurityGroupEgress",
    "CreateNetworkInterface",
    "CreateNetworkInterfacePermission",
}


def api(server) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, timeout=30, auth=server.auth)  # the server requires it


def start_run(server, name: str = "vpc-build/nightly") -> str:
    with api(server) as client:
        deployment = client.get(f"/deployments/name/{name}").raise_for_status().json()
        run = client.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).raise_for_status().json()
        return run["id"]


def wait_final(server, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    with api(server) as client:
        while time.monotonic() < deadline:
            state = client.get(f"/flow_runs/{run_id}").raise_for_status().json()["state"]
            if state and state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                return state
            time.sleep(0.2)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s")


def task_run_states(server, run_id: str, expect: set[str], timeout: float = 30) -> dict[str, set[str]]:
    """Stage name -> state names of its task runs (recorded asynchronously, so poll)."""
    deadline = time.monotonic() + timeout
    with api(server) as client:
        while True:
            runs = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).json()
            states: dict[str, set[str]] = {}
            for tr in runs:
                states.setdefault(tr["name"].split(" ")[0].split("-")[0], set()).add(
                    tr["state"]["name"] if tr["state"] else ""
                )
            if expect <= set(states) or time.monotonic() > deadline:
                return states
            time.sleep(0.2)


def test_retry_from_the_ui_skips_completed_stages(prefect_server, process_worker, worker_sandbox):
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    # Given a run that fails at the binding stage through a fatal fault (both repositories)
    world.faults.fail_next("CreateRepository", count=2, code="Forbidden.RAM")
    run_id = start_run(prefect_server)
    failed = wait_final(prefect_server, run_id)
    assert failed["type"] == "FAILED", failed
    assert "Forbidden.RAM" in failed["message"], failed["message"]  # the failure is named with its code
    first_writes = [c["action"] for c in world.calls.list() if c["writes"]]
    assert ECS_WRITES <= set(first_writes) and "CreateBuildRecordByRule" not in first_writes
    seq = len(world.calls.list())
    # When the fault is gone and the run is retried with the UI's request
    with api(prefect_server) as client:
        answer = client.post(f"/flow_runs/{run_id}/set_state", json=UI_RETRY_BODY).raise_for_status().json()
        assert answer["status"] == "ACCEPT"
    done = wait_final(prefect_server, run_id)
    # Then the same flow run completes, without repeating the writes of the stages that had completed
    assert done["type"] == "COMPLETED", done
    retry_writes = [c["action"] for c in world.calls.list(seq) if c["writes"]]
    assert not ECS_WRITES & set(retry_writes), retry_writes
    assert retry_writes.count("CreateRepository") == 2
    assert retry_writes.count("CreateBuildRecordByRule") == 2
    states = task_run_states(prefect_server, run_id, {"link", "eni", "binding", "build"})
    assert "Cached" in states["link"] and "Cached" in states["eni"], states
