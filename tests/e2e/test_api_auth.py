"""A Prefect server that requires an auth string: clients without it are refused, ours pass it from the env.

The server runs with ``PREFECT_SERVER_API_AUTH_STRING``; the CLI (``prefect deploy``), a process
worker, ``acrvpc webhook serve`` and a Prefect client each get ``PREFECT_API_AUTH_STRING`` from the
environment (:meth:`PrefectServer.env`). This module starts its own authenticated server (on SQLite
in its PREFECT_HOME): the session's shared server stays open for the UI tests, whose raw HTTP and
browser clients carry no credentials.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.prefect_server import PREFECT, PrefectServer, base_env, free_port, stop_group, wait_until
from tests.webhook_payloads import PUSH

pytestmark = pytest.mark.e2e

POOL = "acr-vpc-build"
SECRET = "e2e-auth-webhook-secret"
PROBE = (
    "from prefect import get_client\n"
    "with get_client(sync_client=True) as client:\n"
    "    print(len(client.read_work_pools()))\n"
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """``prefect server start`` with an auth string, its work pool and prefect.yaml's deployments."""
    home = tmp_path_factory.mktemp("prefect-auth-home")
    server = PrefectServer(
        home=home, port=free_port(), log=home / "server.log", auth_string=f"acrvpc:{secrets.token_urlsafe(24)}"
    )
    try:
        server.start()
        server.run(*PREFECT, "work-pool", "create", POOL, "--type", "process")
        server.run(*PREFECT, "--no-prompt", "deploy", "--all")
        yield server
    finally:
        server.stop()


def without_auth(server: PrefectServer, **extra: str) -> dict[str, str]:
    env = base_env(server.home)
    env.update(PREFECT_API_URL=server.api_url, **extra)
    return env


def logs(server: PrefectServer) -> str:
    return "".join(path.read_text(errors="replace") for path in server.home.glob("*.log"))


class TestServerAuth:
    def test_a_client_without_the_auth_string_is_refused(self, secured):
        # Given the server requires an auth string
        with httpx.Client(base_url=secured.api_url, timeout=30) as anonymous:
            # When a client calls the API without it, or with a wrong one
            bare = anonymous.post("/work_pools/filter", json={})
            wrong = anonymous.post("/work_pools/filter", json={}, auth=("acrvpc", "guess"))
            health = anonymous.get("/health")
        # Then both are refused, and only the health probe stays open
        assert bare.status_code == wrong.status_code == 401
        assert health.status_code == 200

    def test_a_client_with_it_is_accepted(self, secured):
        with httpx.Client(base_url=secured.api_url, timeout=30, auth=secured.auth) as client:
            pools = client.post("/work_pools/filter", json={}).raise_for_status().json()
        assert POOL in [pool["name"] for pool in pools]

    def test_the_prefect_client_reads_it_from_the_environment(self, secured):
        refused = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            env=without_auth(secured),
            capture_output=True,
            text=True,
            timeout=120,
        )
        accepted = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=ROOT, env=secured.env(), capture_output=True, text=True, timeout=120
        )
        assert refused.returncode != 0 and "401" in refused.stderr
        assert accepted.returncode == 0, accepted.stderr[-2000:]

    def test_the_cli_without_it_is_refused(self, secured):
        proc = subprocess.run(
            [*PREFECT, "work-pool", "ls"],
            cwd=ROOT,
            env=without_auth(secured),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0


class TestWorkerAuth:
    def test_a_worker_with_the_auth_string_polls_its_pool(self, secured):
        # Given a process worker started with the auth string in its environment
        worker = secured.spawn(
            *PREFECT,
            "worker",
            "start",
            "--pool",
            POOL,
            log=secured.home / "worker.log",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_HEARTBEAT_SECONDS="5",
        )
        try:
            # Then its heartbeat reaches the server: the pool turns READY
            def ready():
                with httpx.Client(base_url=secured.api_url, timeout=30, auth=secured.auth) as client:
                    return client.get(f"/work_pools/{POOL}").json().get("status") == "READY"

            wait_until(ready, 90, f"work pool {POOL} READY")
            assert worker.poll() is None
        finally:
            stop_group(worker)  # so the run the receiver test starts is not executed


class TestReceiverAuth:
    def test_serve_without_the_auth_string_exits_2_with_the_fix(self, secured):
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", "webhook", "serve", "examples/sandbox.yaml", "--port", str(free_port())],
            cwd=ROOT,
            env=without_auth(secured, ACRVPC_WEBHOOK_SECRET=SECRET),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        assert "PREFECT_API_AUTH_STRING" in proc.stderr + proc.stdout

    def test_a_delivery_starts_a_run_on_the_secured_server(self, secured):
        # Given acrvpc webhook serve with the auth string in its environment
        port = free_port()
        receiver = secured.spawn(
            sys.executable,
            "-m",
            "acrvpc",
            "webhook",
            "serve",
            "examples/sandbox.yaml",
            "--port",
            str(port),
            log=secured.home / "webhook.log",
            ACRVPC_WEBHOOK_SECRET=SECRET,
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def up():
                assert receiver.poll() is None, (secured.home / "webhook.log").read_text()[-2000:]
                try:
                    return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(up, 90, "the receiver's /healthz")
            # When GitLab delivers a routed push
            answer = httpx.post(
                f"{url}/hooks/gitlab",
                content=json.dumps(PUSH),
                timeout=10,
                headers={
                    "X-Gitlab-Event": "Push Hook",
                    "X-Gitlab-Token": SECRET,
                    "Content-Type": "application/json",
                    "X-Gitlab-Event-UUID": "auth-e2e-0001",
                },
            )
            # Then the run was created on the authenticated server
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["flow_run_id"]
            with httpx.Client(base_url=secured.api_url, timeout=30, auth=secured.auth) as client:
                run = client.get(f"/flow_runs/{run_id}").raise_for_status().json()
            assert run["idempotency_key"] == "gitlab:auth-e2e-0001"
        finally:
            stop_group(receiver)


def test_the_auth_string_never_appears_in_a_log(secured):
    # Runs last in this module: the server, worker and receiver logs are all written by now
    password = secured.auth_string.partition(":")[2]
    text = logs(secured)
    assert "webhook receiver on" in text  # the receiver's log is among them
    assert password not in text and secured.auth_string not in text
