"""Triggers on a real Prefect server (PostgreSQL) with a process worker: GitLab pushes and schedules.

The receiver runs as ``acrvpc webhook serve examples/sandbox.yaml`` (a subprocess pointed at the
session's server); deliveries are GitLab-shaped (webhook_events.md payloads and headers). The
worker's flow runs talk to the session's worker sandbox, converged first by a run of the full
pipeline's deployment.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deployments.webhook_spool import Spool
from tests.e2e.prefect_server import PREFECT, free_port, stop_group
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


def deliver(
    url: str,
    body,
    *,
    event: str = "Push Hook",
    token: str | None = SECRET,
    delivery: str | None = None,
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> httpx.Response:
    headers = {
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4()),
        "Content-Type": content_type,
        "User-Agent": "GitLab/17.5.1",
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return httpx.post(
        f"{url}/hooks/gitlab", content=raw if raw is not None else json.dumps(body), headers=headers, timeout=10
    )  # GitLab's webhook timeout


def wait_listening(proc, url: str, log, timeout: float = 60) -> None:
    """Wait until ``acrvpc webhook serve`` answers ``/healthz``; raise with its log when it exits or never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"acrvpc webhook serve exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver did not listen: {log.read_text()[-3000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def receiver(prefect_server):
    """``acrvpc webhook serve`` on a free port, against the session's Prefect server."""
    port = free_port()
    log = prefect_server.home / "webhook.log"
    proc = prefect_server.spawn(
        sys.executable,
        "-m",
        "acrvpc",
        "webhook",
        "serve",
        "examples/sandbox.yaml",
        "--port",
        str(port),
        log=log,
        ACRVPC_WEBHOOK_SECRET=SECRET,
    )
    url = f"http://127.0.0.1:{port}"
    wait_listening(proc, url, log)
    yield url
    stop_group(proc)


@pytest.fixture(scope="module")
def converged(prefect_server, process_worker, worker_sandbox):
    """The worker sandbox set up by one run of the full pipeline's deployment (no builds)."""
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    with api(prefect_server) as client:
        run = (
            client.post(
                f"/deployments/{deployment_id(prefect_server, NIGHTLY)}/create_flow_run",
                json={"parameters": {"start_builds": False}},
            )
            .raise_for_status()
            .json()
        )
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
        self, prefect_server, receiver, converged, request
    ):
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
        report(
            request,
            f"webhook: POST answered in {answered * 1000:.0f} ms, flow run Running after "
            f"{to_running:.1f} s, Completed after {time.monotonic() - t0:.1f} s",
        )
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
        built = sorted(
            (world.cr.records[r].name, world.cr.records[r].image_tag) for r in set(world.cr.records) - records_before
        )
        assert built == [("billing-api", "latest"), ("billing-api", "latest"), ("web-frontend", "release")]


class TestEventUuidReuse:
    """Before the tests below: their runs (and the worker building them) would mix with these two."""

    def test_two_pushes_sharing_an_event_uuid_are_each_built(self, prefect_server, receiver, converged):
        world = converged.world
        records_before = set(world.cr.records)
        shared = str(uuid.uuid4())
        second = copy.deepcopy(PUSH)
        second["after"] = second["checkout_sha"] = "b" * 40
        # When GitLab delivers two different pushes with one X-Gitlab-Event-UUID (a hook triggered by a hook)
        answers = [deliver(receiver, body, delivery=shared) for body in (PUSH, second)]
        # Then each starts its own run, with its own commit ...
        run_ids = [a.json()["flow_run_id"] for a in answers]
        assert len(set(run_ids)) == 2, [a.text for a in answers]
        runs = [wait_state(prefect_server, run_id, FINAL) for run_id in run_ids]
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 2
        assert [r["parameters"]["sha"] for r in runs] == [PUSH["checkout_sha"], "b" * 40]
        # ... and both were built
        built = [world.cr.records[r] for r in set(world.cr.records) - records_before]
        assert sorted((b.name, b.image_tag) for b in built) == [("billing-api", "latest")] * 2


class TestBadDeliveries:
    def test_each_bad_request_gets_its_status_and_no_run(self, prefect_server, receiver):
        runs_before = flow_run_count(prefect_server)
        unknown = copy.deepcopy(PUSH)
        unknown["project"]["path_with_namespace"] = "secret/vault-tools"
        cases = {
            "wrong token": (deliver(receiver, PUSH, token="not-the-secret"), 401),
            "no token": (deliver(receiver, PUSH, token=None), 401),
            "malformed body": (deliver(receiver, None, raw=b'{"object_kind": "push", "ref": '), 400),
            "oversized body": (
                deliver(receiver, None, raw=b"{" + b" " * (30 * 1000 * 1000) + b"}"),
                413,
            ),  # GitLab: 25 MB
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
    def test_a_scheduled_run_is_created_by_the_scheduler_and_completes(
        self, prefect_server, process_worker, worker_sandbox
    ):
        worker_sandbox.world.clock.set_scale(20.0)
        nightly = deployment_id(prefect_server, NIGHTLY)
        anchor = datetime.now(UTC) + timedelta(seconds=6)
        body = [{"schedule": {"interval": 3600, "anchor_date": anchor.isoformat(), "timezone": "UTC"}, "active": True}]
        with api(prefect_server) as client:
            [schedule] = client.post(f"/deployments/{nightly}/schedules", json=body).raise_for_status().json()
            try:
                # When the scheduler service (loop: 2 s in this server) sees the schedule
                deadline = time.monotonic() + 60
                runs: list[dict] = []
                while not runs and time.monotonic() < deadline:
                    runs = (
                        client.post(
                            "/flow_runs/filter",
                            json={
                                "deployments": {"id": {"any_": [nightly]}},
                                "sort": "EXPECTED_START_TIME_ASC",
                                "flow_runs": {"tags": {"all_": ["auto-scheduled"]}},
                            },
                        )
                        .raise_for_status()
                        .json()
                    )
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


# --- Issue 17: what happens after the 202 (the spool, dead letters, replay, re-deploys, Prefect down) ---


class Relay:
    """A TCP relay in front of the Prefect server on its own port: "Prefect down" (connection refused) until
    :meth:`start`, so a receiver pointed at it sees the real server come up."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target_port = free_port(), target_port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def start(self) -> Relay:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self.loop is not None and self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
            self.loop.call_soon_threadsafe(self.loop.stop)


class SpooledReceiver:
    """``acrvpc webhook serve examples/sandbox.yaml --spool FILE`` whose Prefect API is a relay; its secret is
    stored with a trailing newline (as ``echo`` writes it), while GitLab sends it without."""

    def __init__(self, server, relay: Relay, home, *extra: str) -> None:
        self.server, self.relay = server, relay
        self.spool_path, self.log = home / "spool.sqlite3", home / "receiver.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = server.env(ACRVPC_WEBHOOK_SECRET=SECRET + "\n")
        env["PREFECT_API_URL"] = relay.api_url
        env["PYTHONUNBUFFERED"] = "1"  # its console lines reach the log as they are printed
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "acrvpc",
                "webhook",
                "serve",
                "examples/sandbox.yaml",
                "--port",
                str(port),
                "--spool",
                str(self.spool_path),
                *extra,
            ],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server.children.append(self.proc)
        wait_listening(self.proc, self.url, self.log, timeout=90)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/healthz", timeout=5).json()

    def spool(self) -> Spool:
        return Spool(self.spool_path)

    def wait(self, key: str, state: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        spool = self.spool()
        try:
            while time.monotonic() < deadline:
                found = spool.get(key)
                if found is not None and found.state == state:
                    return found
                time.sleep(0.2)
        finally:
            spool.close()
        raise AssertionError(
            f"delivery {key!r} not {state} after {timeout} s: {found}; log: {self.log.read_text()[-3000:]}"
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.server.run(sys.executable, "-m", "acrvpc", "webhook", *args, "--spool", str(self.spool_path))

    def stop(self) -> None:
        stop_group(self.proc)


@pytest.fixture(scope="module")
def spooled(prefect_server, tmp_path_factory):
    """A spooled receiver with Prefect reachable (through a started relay) and dead letters after 6 s."""
    relay = Relay(prefect_server.port).start()
    hook = SpooledReceiver(prefect_server, relay, tmp_path_factory.mktemp("spooled-receiver"), "--max-age", "6")
    yield hook
    hook.stop()
    relay.stop()


def failed_events(server, keys: list[str], timeout: float = 40) -> list[dict]:
    """The acrvpc.delivery.failed events of these deliveries (the event persister flushes every few seconds)."""
    wanted = [f"acrvpc.delivery.{key}" for key in keys]
    deadline = time.monotonic() + timeout
    with api(server) as client:
        while True:
            found = (
                client.post(
                    "/events/filter",
                    json={
                        "filter": {"event": {"name": ["acrvpc.delivery.failed"]}, "resource": {"id": wanted}},
                        "limit": 50,
                    },
                )
                .raise_for_status()
                .json()["events"]
            )
            if {e["resource"]["prefect.resource.id"] for e in found} >= set(wanted) or time.monotonic() > deadline:
                return found
            time.sleep(0.3)


class TestPrefectDown:
    def test_the_receiver_starts_with_prefect_down_spools_and_drains_when_it_answers(self, prefect_server, tmp_path):
        relay = Relay(prefect_server.port)  # not started: connection refused, as after a reboot in the wrong order
        hook = SpooledReceiver(prefect_server, relay, tmp_path)
        try:
            # Given a receiver started while Prefect was unreachable (it listens; it used to exit 2)
            assert "does not answer" in hook.log.read_text()
            assert hook.health() == {
                "status": "degraded",
                "prefect": {"reachable": False},
                "deliveries": {"pending": 0, "dead": 0},
            }
            # When GitLab delivers a push (X-Gitlab-Token without the stored secret's newline)
            key = str(uuid.uuid4())
            answer = deliver(hook.url, PUSH, delivery=key)
            # Then it is answered from the spool, and /healthz counts it
            assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
            assert hook.health()["deliveries"] == {"pending": 1, "dead": 0}
            # When Prefect answers again
            relay.start()
            # Then the drainer creates its run, and /healthz says Prefect is reachable
            done = hook.wait(key, "done", timeout=60)
            run = flow_run(prefect_server, done.run_id)
            assert run["deployment_id"] == deployment_id(prefect_server, ON_PUSH)
            assert run["parameters"]["event_id"] == key and run["idempotency_key"] == f"gitlab:{key}"
            deadline = time.monotonic() + 20
            while hook.health()["prefect"]["reachable"] is not True and time.monotonic() < deadline:
                time.sleep(0.2)
            assert hook.health() == {
                "status": "ok",
                "prefect": {"reachable": True},
                "deliveries": {"pending": 0, "dead": 0},
            }
        finally:
            hook.stop()
            relay.stop()


class TestDeadLetters:
    def test_422_and_500_refusals_are_dead_letters_with_their_message_event_and_error_line(
        self, prefect_server, spooled
    ):
        runs_before = flow_run_count(prefect_server)
        # When GitLab delivers a tag whose run parameters are over Prefect's size limit (a 600 kB tag name)
        huge = str(uuid.uuid4())
        answer = deliver(spooled.url, tag_push("release-v" + "9" * 600_000), event="Tag Push Hook", delivery=huge)
        # Then the answer says the run was refused for good, and the delivery is a dead letter at once
        assert answer.status_code == 202 and answer.json()["status"] == "dead", answer.text
        too_large = spooled.wait(huge, "dead", timeout=5)
        assert too_large.status == 422 and "524,288" in too_large.last_error, too_large
        # Given a spooled delivery whose ref holds a NUL (recorded before the receiver refused them at the door:
        # now a 400) that PostgreSQL refuses (Prefect 3.9.1 answers 503 for this database error: "retry")
        nul_ref = copy.deepcopy(PUSH)
        nul_ref["ref"] = "refs/heads/ma\u0000in"
        assert deliver(spooled.url, nul_ref).status_code == 400
        nul = str(uuid.uuid4())
        spool = spooled.spool()
        spool.add(
            nul,
            {"project": "platform/billing-api", "ref": "refs/heads/ma\x00in", "sha": PUSH["after"], "event_id": nul},
        )  # the receiver holds the same file open: WAL + busy timeout
        spool.close()
        # When the drainer tries it (a 5xx is retried) until --max-age (6 s)
        failed = spooled.wait(nul, "dead", timeout=60)
        # Then it is dead with the server's status and message, after more than one attempt
        assert failed.status in (500, 503) and failed.last_error and failed.attempts >= 2, failed
        assert flow_run_count(prefect_server) == runs_before
        # ... each logged at ERROR with the status and message
        log = spooled.log.read_text()
        assert any(
            "ERROR" in line and huge in line and "422" in line and "524,288" in line for line in log.splitlines()
        )
        assert any(
            "ERROR" in line and nul in line and f"{failed.status} {failed.last_error}" in line
            for line in log.splitlines()
        )
        # ... and reported as acrvpc.delivery.failed events on the server (what notification automations match)
        events = {e["resource"]["prefect.resource.name"]: e for e in failed_events(prefect_server, [huge, nul])}
        assert set(events) == {huge, nul}, events
        assert events[huge]["payload"]["status"] == 422 and "524,288" in events[huge]["payload"]["error"]
        assert events[nul]["payload"]["status"] == failed.status
        assert events[nul]["resource"]["acrvpc.project"] == "platform/billing-api"
        # ... and listed by `acrvpc webhook deliveries --state dead --json` while the receiver runs
        listed = json.loads(spooled.cli("deliveries", "--state", "dead", "--json").stdout)
        assert isinstance(listed, list) and {d["key"] for d in listed} >= {huge, nul}
        assert {d["state"] for d in listed} == {"dead"}
        assert {d["key"]: d["status"] for d in listed if d["key"] in (huge, nul)} == {huge: 422, nul: failed.status}
        assert spooled.health()["deliveries"]["dead"] >= 2


class TestRedeploy:
    def test_a_deployment_re_created_mid_stream_strands_no_delivery(self, prefect_server, spooled):
        old = deployment_id(prefect_server, ON_PUSH)
        # Given the receiver started a run of the deployment (it knows its id)
        first = deliver(spooled.url, PUSH)
        assert first.status_code == 202 and "flow_run_id" in first.json(), first.text
        # When the deployment is deleted, a push arrives, and the deployment is deployed again (a new id)
        with api(prefect_server) as client:
            client.delete(f"/deployments/{old}").raise_for_status()
        gone = str(uuid.uuid4())
        answer = deliver(spooled.url, PUSH, delivery=gone)
        prefect_server.run(*PREFECT, "--no-prompt", "deploy", "--name", "webhook")
        new = deployment_id(prefect_server, ON_PUSH)
        assert new != old
        # Then the push that came while it was gone is a dead letter naming the fix (not queued forever) ...
        assert answer.json()["status"] == "dead", answer.text
        letter = spooled.wait(gone, "dead", timeout=5)
        assert letter.status == 404 and "deploy it again" in letter.last_error
        # ... the next push starts a run of the new deployment (the id read again by name, no restart) ...
        later = deliver(spooled.url, PUSH)
        assert later.status_code == 202 and "flow_run_id" in later.json(), later.text
        assert flow_run(prefect_server, later.json()["flow_run_id"])["deployment_id"] == new
        # ... and `acrvpc webhook replay KEY` (receiver running) gets the dead letter its run
        assert "1 dead letter" in spooled.cli("replay", gone).stdout
        done = spooled.wait(gone, "done", timeout=60)
        assert flow_run(prefect_server, done.run_id)["deployment_id"] == new


class TestGitLabSizedDefaults:
    def test_a_300_push_minute_from_one_address_is_all_answered_2xx(self, spooled):
        unrouted = copy.deepcopy(PUSH)
        unrouted["project"]["path_with_namespace"] = "platform/not-routed"  # counted by the limit, no run
        t0 = time.monotonic()
        with httpx.Client(base_url=spooled.url, timeout=10) as client:
            statuses = [
                client.post(
                    "/hooks/gitlab",
                    content=json.dumps(unrouted),
                    headers={
                        "X-Gitlab-Event": "Push Hook",
                        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                        "X-Gitlab-Token": SECRET,
                        "Content-Type": "application/json",
                    },
                ).status_code
                for _ in range(300)
            ]
        assert statuses == [202] * 300, {s: statuses.count(s) for s in set(statuses)}
        assert time.monotonic() - t0 < 60

    def test_a_trailing_slash_is_served_and_a_30_mb_body_refused(self, spooled):
        with httpx.Client(base_url=spooled.url, timeout=30, follow_redirects=False) as client:
            hdrs = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET, "Content-Type": "application/json"}
            unrouted = copy.deepcopy(PUSH)
            unrouted["project"]["path_with_namespace"] = "platform/not-routed"
            slash = client.post("/hooks/gitlab/", content=json.dumps(unrouted), headers=hdrs)
            assert slash.status_code == 202 and slash.json()["status"] == "ignored", slash.text
            huge = client.post("/hooks/gitlab", content=b" " * (30 * 1000 * 1000), headers=hdrs)
            assert huge.status_code == 413
