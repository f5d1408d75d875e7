"""Triggers on a real Prefect server (PostgreSQL) with a process worker: GitLab pushes and schedules.

The receiver runs as ``acrvpc webhook serve examples/sandbox.yaml`` (a subprocess pointed at the
session's server); deliveries are GitLab-shaped (webhook_events.md payloads and headers). The
worker's flow runs talk to the session's worker sandbox, converged first by a run of the full
pipeline's deployment.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.e2e.prefect_server import free_port, stop_group
from tests.webhook_payloads import PUSH, tag_push

pytestmark = pytest.mark.e2e

SECRET = "e2e-webhook-secret-0001"
ON_PUSH, NIGHTLY = "build-on-push/webhook", "vpc-build/nightly"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def api(server) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, timeout=30, auth=server.auth)  # auth: None on an open server


def deployment_id(server, name: str) -> str:
    with api(server) as client:
        return client.get(f"/deployments/name/{name}").raise_for_status().json()["id"]


def flow_run_count(server) -> int:
    with api(server) as client:
        return client.post("/flow_runs/count", json={}).raise_for_status().json()


def flow_run(server, run_id: str) -> dict:
    with api(server) as client:
        return client.get(f"/flow_runs/{run_id}").raise_for_status().json()


def wait_state(server, run_id: str, types: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = flow_run(server, run_id)
        if run["state"] and run["state"]["type"] in types:
            return run
        time.sleep(0.1)
    raise AssertionError(f"flow run {run_id} not in {types} after {timeout} s: {flow_run(server, run_id)['state']}")


def deliver(url: str, body, *, event: str = "Push Hook", token: str | None = SECRET, delivery: str | None = None,
            content_type: str = "application/json", raw: bytes | None = None) -> httpx.Response:
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
               "Content-Type": content_type, "User-Agent": "GitLab/17.5.1"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return httpx.post(f"{url}/hooks/gitlab", content=raw if raw is not None else json.dumps(body), headers=headers,
                      timeout=10)  # GitLab's webhook timeout


@pytest.fixture(scope="module")
def receiver(prefect_server):
    """``acrvpc webhook serve`` on a free port, against the session's Prefect server."""
    port = free_port()
    log = prefect_server.home / "webhook.log"
    proc = prefect_server.spawn(sys.executable, "-m", "acrvpc", "webhook", "serve", "examples/sandbox.yaml",
                                "--port", str(port), log=log, ACRVPC_WEBHOOK_SECRET=SECRET)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"acrvpc webhook serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver did not listen: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    yield url
    stop_group(proc)


@pytest.fixture(scope="module")
def converged(prefect_server, process_worker, worker_sandbox):
    """The worker sandbox set up by one run of the full pipeline's deployment (no builds)."""
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    with api(prefect_server) as client:
        run = client.post(f"/deployments/{deployment_id(prefect_server, NIGHTLY)}/create_flow_run",
                          json={"parameters": {"start_builds": False}}).raise_for_status().json()
    done = wait_state(prefect_server, run["id"], FINAL, timeout=180)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    return worker_sandbox


def report(request, line: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


class TestPushDelivery:
    def test_a_routed_push_builds_the_image_once_and_a_redelivery_starts_nothing(
            self, prefect_server, receiver, converged, request):
        world = converged.world
        records_before = set(world.cr.records)
        seq = len(world.calls.list())
        runs_before = flow_run_count(prefect_server)
        delivery = str(uuid.uuid4())
        # When GitLab delivers a push to platform/billing-api's main branch
        t0 = time.monotonic()
        answer = deliver(receiver, PUSH, delivery=delivery)
        answered = time.monotonic() - t0
        # Then the receiver answers 202 with the flow run it started, well within GitLab's 10 s
        assert answer.status_code == 202, answer.text
        assert answered < 5, answered
        run_id = answer.json()["flow_run_id"]
        running = wait_state(prefect_server, run_id, {"RUNNING"} | FINAL)
        to_running = time.monotonic() - t0
        done = wait_state(prefect_server, run_id, FINAL, timeout=120)
        report(request, f"webhook: POST answered in {answered * 1000:.0f} ms, flow run Running after "
                        f"{to_running:.1f} s, Completed after {time.monotonic() - t0:.1f} s")
        # ... a run of the on-push deployment with the push's parameters, which the worker completed
        assert running["deployment_id"] == deployment_id(prefect_server, ON_PUSH)
        assert done["state"]["type"] == "COMPLETED", done["state"]
        assert done["parameters"]["project"] == "platform/billing-api"
        assert done["parameters"]["ref"] == "refs/heads/main" and done["parameters"]["event_id"] == delivery
        assert flow_run_count(prefect_server) == runs_before + 1
        # ... and the sandbox built the routed image, the run's only write
        [record_id] = set(world.cr.records) - records_before
        record = world.cr.records[record_id]
        assert (record.namespace, record.name, record.image_tag) == ("apps", "billing-api", "latest")
        assert world.cr.status(record) == "SUCCESS"
        assert [c["action"] for c in world.calls.list(seq) if c["writes"]] == ["CreateBuildRecordByRule"]
        # When GitLab delivers the same event again (a resend keeps its delivery id)
        again = deliver(receiver, PUSH, delivery=delivery)
        # Then it answers with the same run and starts nothing
        assert again.status_code == 202 and again.json()["flow_run_id"] == run_id
        assert flow_run_count(prefect_server) == runs_before + 1
        assert set(world.cr.records) - records_before == {record_id}

    def test_overlapping_deliveries_each_build_their_rule(self, prefect_server, receiver, converged, request):
        """Also measures POST -> flow run Running for the report (not asserted)."""
        world = converged.world
        records_before = set(world.cr.records)
        deliveries = [(PUSH, "Push Hook"), (tag_push("release-v1.4.0"), "Tag Push Hook"), (PUSH, "Push Hook")]
        run_ids, latencies = [], []
        for body, event in deliveries:  # each next delivery while the previous run is still building
            t0 = time.monotonic()
            answer = deliver(receiver, body, event=event)
            assert answer.status_code == 202, answer.text
            run_ids.append(answer.json()["flow_run_id"])
            wait_state(prefect_server, run_ids[-1], {"RUNNING"} | FINAL)
            latencies.append(time.monotonic() - t0)
        report(request, "webhook: POST -> flow run Running " + ", ".join(f"{s:.1f} s" for s in latencies))
        states = [wait_state(prefect_server, run_id, FINAL)["state"]["type"] for run_id in run_ids]
        assert states == ["COMPLETED"] * 3
        built = sorted((world.cr.records[r].name, world.cr.records[r].image_tag)
                       for r in set(world.cr.records) - records_before)
        assert built == [("billing-api", "latest"), ("billing-api", "latest"), ("web-frontend", "release")]


class TestBadDeliveries:
    def test_each_bad_request_gets_its_status_and_no_run(self, prefect_server, receiver):
        runs_before = flow_run_count(prefect_server)
        unknown = copy.deepcopy(PUSH)
        unknown["project"]["path_with_namespace"] = "secret/vault-tools"
        cases = {
            "wrong token": (deliver(receiver, PUSH, token="not-the-secret"), 401),
            "no token": (deliver(receiver, PUSH, token=None), 401),
            "malformed body": (deliver(receiver, None, raw=b'{"object_kind": "push", "ref": '), 400),
            "oversized body": (deliver(receiver, None, raw=b"{" + b" " * (1024 * 1024) + b"}"), 413),
            "wrong content type": (deliver(receiver, PUSH, content_type="application/x-www-form-urlencoded"), 415),
            "unknown project": (deliver(receiver, unknown), 202),
            "tag matching no rule": (deliver(receiver, tag_push("v9.9.9"), event="Tag Push Hook"), 202),
            "other event kind": (deliver(receiver, {"object_kind": "issue"}, event="Issue Hook"), 202),
        }
        statuses = {name: answer.status_code for name, (answer, _) in cases.items()}
        assert statuses == {name: status for name, (_, status) in cases.items()}
        for name in ("unknown project", "tag matching no rule", "other event kind"):
            assert cases[name][0].json()["status"] == "ignored", name
        time.sleep(1.0)
        assert flow_run_count(prefect_server) == runs_before


class TestDatabase:
    def test_the_server_keeps_its_flow_runs_in_postgresql(self, prefect_server, postgres):
        if postgres is None:  # no PostgreSQL binaries: the fixtures said so loudly; the server used SQLite
            assert (prefect_server.home / "prefect.db").exists()
            return
        import asyncio

        import asyncpg

        async def count(table: str) -> int:
            conn = await asyncpg.connect(postgres.url.replace("+asyncpg", ""))
            try:
                return await conn.fetchval(f"SELECT count(*) FROM {table}")
            finally:
                await conn.close()

        with api(prefect_server) as client:
            deployments = client.post("/deployments/count", json={}).raise_for_status().json()
        assert asyncio.run(count("deployment")) == deployments >= 3  # prefect.yaml's deployments
        assert asyncio.run(count("flow_run")) == flow_run_count(prefect_server)
        assert not (prefect_server.home / "prefect.db").exists()


class TestSchedule:
    def test_a_scheduled_run_is_created_by_the_scheduler_and_completes(self, prefect_server, process_worker,
                                                                       worker_sandbox):
        worker_sandbox.world.clock.set_scale(20.0)
        nightly = deployment_id(prefect_server, NIGHTLY)
        anchor = datetime.now(timezone.utc) + timedelta(seconds=6)
        body = [{"schedule": {"interval": 3600, "anchor_date": anchor.isoformat(), "timezone": "UTC"},
                 "active": True}]
        with api(prefect_server) as client:
            [schedule] = client.post(f"/deployments/{nightly}/schedules", json=body).raise_for_status().json()
            try:
                # When the scheduler service (loop: 2 s in this server) sees the schedule
                deadline = time.monotonic() + 60
                runs: list[dict] = []
                while not runs and time.monotonic() < deadline:
                    runs = client.post("/flow_runs/filter", json={
                        "deployments": {"id": {"any_": [nightly]}}, "sort": "EXPECTED_START_TIME_ASC",
                        "flow_runs": {"tags": {"all_": ["auto-scheduled"]}}}).raise_for_status().json()
                    time.sleep(0.5)
                # Then it created the runs of the schedule (the first at its anchor), and the worker ran the
                # first to completion
                assert runs and all(run["auto_scheduled"] for run in runs), runs
                first = runs[0]
                assert first["created_by"]["type"] == "SCHEDULE", first["created_by"]
                assert abs(datetime.fromisoformat(first["expected_start_time"]) - anchor) < timedelta(seconds=1)
                done = wait_state(prefect_server, first["id"], FINAL, timeout=180)
                assert done["state"]["type"] == "COMPLETED", done["state"]
            finally:
                client.delete(f"/deployments/{nightly}/schedules/{schedule['id']}")
