"""Console steps of a deployment run suspend it: no process waits, and any worker resumes it.

Runs on the session's real ``prefect server start`` (tests/e2e/conftest.py) with process workers
of this module's own pool, so stopping a worker here leaves the session's worker alone. The spec
is a console-mode copy of examples/sandbox.yaml, passed to the deployment by absolute path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from acrvpc.cli.console_operator import bind_payload, link_payload
from acrvpc.domain.spec import load_spec
from tests.conftest import ROOT
from tests.e2e.prefect_server import PREFECT, stop_group
from tests.e2e.test_console_mode import console_spec
from tests.e2e.test_ui_retry import UI_RETRY_BODY, api, task_run_states, wait_final

pytestmark = pytest.mark.e2e

POOL = "acr-vpc-build-suspend"
DEPLOYMENT = "vpc-build/console-suspend"


@pytest.fixture(scope="module")
def suspend_deployment(prefect_server):
    prefect_server.run(*PREFECT, "work-pool", "create", POOL, "--type", "process")
    prefect_server.run(
        *PREFECT,
        "--no-prompt",
        "deploy",
        "flows/vpc_build.py:vpc_build",
        "--name",
        DEPLOYMENT.split("/")[1],
        "--pool",
        POOL,
        "--param",
        "spec_path=examples/sandbox.yaml",
    )
    return DEPLOYMENT


@pytest.fixture
def workers(prefect_server, worker_sandbox):
    """Starts process workers of this module's pool by name; stops those still running at the end."""
    started: list[subprocess.Popen] = []

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        log = prefect_server.home / f"{name}.log"
        proc = prefect_server.spawn(
            *PREFECT,
            "worker",
            "start",
            "--pool",
            POOL,
            "--name",
            name,
            log=log,
            ACRVPC_SANDBOX_URL=worker_sandbox.url,
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="1",
        )
        started.append(proc)
        return proc, log

    yield start
    for proc in started:
        stop_group(proc)


def start_run(server, spec_path: Path, **parameters: Any) -> str:
    with api(server) as client:
        deployment = client.get(f"/deployments/name/{DEPLOYMENT}").raise_for_status().json()
        run = (
            client.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": {"spec_path": str(spec_path), **parameters}},
            )
            .raise_for_status()
            .json()
        )
        return run["id"]


def wait_run(server, run_id: str, until: Callable[[dict], bool], what: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    with api(server) as client:
        while time.monotonic() < deadline:
            run = client.get(f"/flow_runs/{run_id}").raise_for_status().json()
            if run["state"] and until(run):
                return run
            assert run["state"]["type"] not in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}, (
                f"run ended {run['state']['type']} while waiting until {what}: {run['state']['message']}"
            )
            time.sleep(0.3)
    raise AssertionError(f"flow run {run_id} not {what} within {timeout} s")


def suspended_at(server, run_id: str, key: str) -> dict:
    """The run once it is suspended (Paused, rescheduled on resume) at pause ``key``."""

    def at(run: dict) -> bool:
        state = run["state"]
        return state["type"] == "PAUSED" and state["state_details"]["pause_key"] == key

    run = wait_run(server, run_id, at, f"suspended at {key}")
    assert run["state"]["name"] == "Suspended" and run["state"]["state_details"]["pause_reschedule"], run["state"]
    return run


def flow_run_processes(run_id: str) -> list[int]:
    """Pids of processes running flow run ``run_id`` (a process worker sets PREFECT__FLOW_RUN_ID)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours
                continue
    return found


def no_process_holds(run_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (pids := flow_run_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not pids, f"flow run {run_id} is suspended but processes {pids} still run it"


def console_action(sandbox, action: str, payload: dict[str, Any]) -> None:
    resp = requests.post(f"{sandbox.url}/_sandbox/console/{action}", json=payload, timeout=5)
    assert resp.status_code == 200, resp.text


def acrvpc_resume(server, run_id: str, *args: str) -> str:
    cli = subprocess.run(
        [sys.executable, "-m", "acrvpc", "resume", run_id, *args],
        cwd=ROOT,
        env={**server.env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    return cli.stdout


def run_inputs(server, run_id: str) -> dict[str, Any]:
    """The run's stored answers (``*-response`` inputs) by key."""
    with api(server) as client:
        found = (
            client.post(
                f"/flow_runs/{run_id}/input/filter", json={"prefix": "suspended-", "limit": 50, "exclude_keys": []}
            )
            .raise_for_status()
            .json()
        )
    return {i["key"]: json.loads(i["value"]) for i in found if i["key"].endswith("-response")}


def run_logs(server, run_id: str) -> list[str]:
    with api(server) as client:
        return [
            log["message"]
            for log in client.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
            .raise_for_status()
            .json()
        ]


def write_spec(path: Path, **link: Any) -> Path:
    """Rewrite a console spec in place (the run reads it at each execution)."""
    written = console_spec(path.parent, **link)
    assert written == path
    return path


def test_suspended_run_frees_its_process_and_resumes_on_another_worker(
    prefect_server, suspend_deployment, workers, worker_sandbox, tmp_path
):
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    # given a console-mode spec, an instance with no console link and no GitLab account, and worker A
    path = console_spec(tmp_path)
    spec = load_spec(path)
    console_action(worker_sandbox, "unbind", {"instance_id": spec.instance_id})
    worker_a, _ = workers("suspend-a")
    # when a deployment run reaches Manage Link
    run_id = start_run(prefect_server, path, start_builds=True)
    suspended_at(prefect_server, run_id, "console-link")
    # then it is suspended, and no process runs it while worker A keeps running
    no_process_holds(run_id)
    assert worker_a.poll() is None
    # when the operator does Manage Link and resumes the run (as the UI's form does)
    console_action(worker_sandbox, "link", link_payload(spec))
    with api(prefect_server) as client:
        answer = (
            client.post(f"/flow_runs/{run_id}/resume", json={"run_input": {"done": True, "note": "link made by ops"}})
            .raise_for_status()
            .json()
        )
        assert answer["status"] == "ACCEPT", answer
    # then a worker runs it on, and it suspends again at Bind Account, again holding no process
    suspended_at(prefect_server, run_id, "console-account")
    no_process_holds(run_id)
    # when worker A is stopped, worker B starts, and the operator binds the account and resumes with the CLI
    stop_group(worker_a)
    _, log_b = workers("suspend-b")
    console_action(worker_sandbox, "bind", bind_payload(spec))
    printed = acrvpc_resume(prefect_server, run_id, "--note", "bound by ops")
    assert "resumed flow run" in printed and "console-account" in printed
    # then worker B finishes the run: verified, bound and built
    final = wait_final(prefect_server, run_id, timeout=300)
    assert final["type"] == "COMPLETED", final
    assert run_id in log_b.read_text()
    builds = [c for c in world.calls.list() if c["action"] == "CreateBuildRecordByRule" and c["status"] == 200]
    assert len(builds) == 2, builds
    # the operator's answers reached the steps, and the stages done before a suspension came back Cached
    assert run_inputs(prefect_server, run_id) == {
        "suspended-console-link-response": {"done": True, "note": "link made by ops"},
        "suspended-console-account-response": {"done": True, "note": "bound by ops"},
    }
    logs = run_logs(prefect_server, run_id)
    assert any("operator answered the console step 'manage link': done=True" in m for m in logs), logs
    assert any("operator answered the console step 'bind account': done=True" in m for m in logs), logs
    states = task_run_states(prefect_server, run_id, {"preflight", "gitlab"})
    assert "Cached" in states["preflight"] and "Cached" in states["gitlab"], states
    # the preflight ran once, not once per execution of the flow function
    assert sum(c["action"] == "DescribeVpcAttribute" for c in world.calls.list()) == 1


def test_retried_run_asks_again_after_a_timed_out_and_a_refused_console_step(
    prefect_server, suspend_deployment, workers, worker_sandbox, tmp_path
):
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    # given a console-mode spec with a 3 s pause timeout, an instance without console link, and a worker
    path = console_spec(tmp_path, pause_timeout_minutes=0.05)
    spec = load_spec(path)
    workers("retry-a")
    run_id = start_run(prefect_server, path, start_builds=False)
    # when nobody answers Manage Link in time
    suspended_at(prefect_server, run_id, "console-link")
    failed = wait_final(prefect_server, run_id, timeout=60)
    assert failed["type"] == "FAILED" and "never resumed" in failed["message"], failed
    # and the run is retried the way the UI's Retry does (with time to answer now)
    write_spec(path, pause_timeout_minutes=10)
    with api(prefect_server) as client:
        assert client.post(f"/flow_runs/{run_id}/set_state", json=UI_RETRY_BODY).json()["status"] == "ACCEPT"
    # then the retried run asks again (a new pause of its second attempt), and an answer "not done" fails it
    suspended_at(prefect_server, run_id, "console-link-attempt-2")
    acrvpc_resume(prefect_server, run_id, "--not-done", "--note", "no console access today")
    refused = wait_final(prefect_server, run_id)
    assert refused["type"] == "FAILED" and "CONSOLE_STEP_NOT_DONE" in refused["message"], refused
    # and when that run is retried, it asks once more; the operator does the step and it completes
    with api(prefect_server) as client:
        assert client.post(f"/flow_runs/{run_id}/set_state", json=UI_RETRY_BODY).json()["status"] == "ACCEPT"
    suspended_at(prefect_server, run_id, "console-link-attempt-3")
    console_action(worker_sandbox, "link", link_payload(spec))
    acrvpc_resume(prefect_server, run_id, "--note", "done on the third attempt")
    done = wait_final(prefect_server, run_id)
    assert done["type"] == "COMPLETED", done
    # each attempt's answer is kept with the run under its own key
    assert run_inputs(prefect_server, run_id) == {
        "suspended-console-link-attempt-2-response": {"done": False, "note": "no console access today"},
        "suspended-console-link-attempt-3-response": {"done": True, "note": "done on the third attempt"},
    }
