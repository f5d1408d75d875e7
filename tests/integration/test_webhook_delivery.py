"""What happens to a delivery after the receiver answers it, and defaults sized to a real GitLab (issue 17).

Over ASGI without a Prefect server: starting a run is the recording ``start_run`` of
test_webhook_receiver.py, made to fail the way Prefect's client fails (``httpx.HTTPStatusError``
with Prefect's JSON error body, connection errors). The same paths against a real Prefect server
are in tests/e2e/test_webhook.py (TestDeadLetters, TestPrefectDown, TestRedeploy).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sqlite3
import subprocess
import sys
import time
import tracemalloc
import warnings

import httpx
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from deployments.webhook import MAX_BODY, WebhookReceiver, create_app
from deployments.webhook_guard import normalize_secret
from deployments.webhook_spool import Spool, classify
from tests.integration.test_webhook_receiver import SECRET, UUID, Recorder, headers, post, push
from tests.webhook_payloads import PUSH

MB = 1000 * 1000


def prefect_error(status: int, detail: str) -> httpx.HTTPStatusError:
    """What Prefect's client raises for an error answer (PrefectHTTPStatusError is an httpx.HTTPStatusError)."""
    request = httpx.Request("POST", "http://prefect/api/deployments/d/create_flow_run")
    response = httpx.Response(
        status, json={"detail": detail} if status < 500 else {"exception_message": detail}, request=request
    )
    return httpx.HTTPStatusError(f"Client error '{status}'", request=request, response=response)


class Reports:
    """The receiver's ``report``: the dead letters it was told about."""

    def __init__(self) -> None:
        self.letters: list = []

    async def __call__(self, letter) -> None:
        self.letters.append(letter)


def receiver(spec, start, **options) -> WebhookReceiver:
    return WebhookReceiver(spec, SECRET, start, **options)


class TestDeadLetters:
    def test_a_422_is_a_dead_letter_at_once_with_its_status_and_message_reported_and_logged(self, spec, caplog):
        reports = Reports()
        refused = Recorder(fail=prefect_error(422, "Flow run parameters must be less than 524,288 bytes"))
        hook = receiver(spec, refused, report=reports)
        with caplog.at_level(logging.ERROR, logger="acrvpc.webhook"):
            answer = post(TestClient(hook.app()), PUSH)
        # GitLab gets a 2xx (the delivery was fine; Prefect refused the run) that says so
        assert answer.status_code == 202 and answer.json()["status"] == "dead"
        assert "422" in answer.json()["reason"] and "524,288" not in answer.text
        [letter] = hook.spool.deliveries("dead")
        assert (letter.status, letter.attempts, letter.key) == (422, 1, UUID)
        assert letter.last_error == "Flow run parameters must be less than 524,288 bytes"
        assert letter.parameters["ref"] == PUSH["ref"]
        [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "422" in line.getMessage() and "524,288" in line.getMessage()
        # the drainer reports it, and nothing retries it
        asyncio.run(hook.drain())
        assert [r.key for r in reports.letters] == [UUID]
        assert len(refused.calls) == 1 and hook.spool.counts()["dead"] == 1

    def test_a_500_is_retried_until_the_maximum_age_then_dead_with_its_message(self, spec, caplog):
        reports = Reports()
        failing = Recorder(fail=prefect_error(500, "Internal Server Error"))
        hook = receiver(spec, failing, report=reports, max_age=1.0)
        answer = post(TestClient(hook.app()), PUSH)
        assert answer.json()["status"] == "queued" and hook.spool.pending() == 1
        [pending] = hook.spool.deliveries("pending")
        assert (pending.status, pending.last_error) == (500, "Internal Server Error")
        with caplog.at_level(logging.ERROR, logger="acrvpc.webhook"):
            deadline = time.monotonic() + 10
            while hook.spool.pending() and time.monotonic() < deadline:
                asyncio.run(hook.drain())
                time.sleep(0.2)
        [letter] = hook.spool.deliveries("dead")
        assert letter.status == 500 and letter.last_error == "Internal Server Error" and letter.attempts >= 2
        assert [r.key for r in reports.letters] == [UUID]
        assert any(
            "max age" in r.getMessage() and "500" in r.getMessage()
            for r in caplog.records
            if r.levelno == logging.ERROR
        )

    @pytest.mark.parametrize(
        ("exc", "permanent"),
        [
            (prefect_error(404, "Deployment not found"), True),
            (prefect_error(409, "Validation failed"), True),
            (prefect_error(408, "timeout"), False),
            (prefect_error(429, "slow down"), False),
            (prefect_error(503, "busy"), False),
            (httpx.ConnectError("refused"), False),
            (TimeoutError(), False),
            (ValueError("Flow run parameters must be less than"), True),
        ],
    )
    def test_which_failures_are_permanent(self, exc, permanent):
        assert classify(exc).permanent is permanent

    def test_a_report_prefect_did_not_take_is_sent_on_a_later_pass(self, spec):
        class Down(Reports):
            fail = True

            async def __call__(self, letter) -> None:
                if self.fail:
                    raise httpx.ConnectError("refused")
                await super().__call__(letter)

        reports = Down()
        hook = receiver(spec, Recorder(fail=prefect_error(422, "too large")), report=reports)
        post(TestClient(hook.app()), PUSH)
        assert reports.letters == [] and len(hook.spool.unreported()) == 1
        reports.fail = False
        asyncio.run(hook.drain())
        assert [r.key for r in reports.letters] == [UUID] and hook.spool.unreported() == []

    def test_a_replayed_dead_letter_gets_its_run(self, spec):
        recorder = Recorder(fail=prefect_error(404, "gone"))
        hook = receiver(spec, recorder)
        post(TestClient(hook.app()), PUSH)
        assert hook.spool.counts()["dead"] == 1
        recorder.fail = None
        assert hook.spool.replay() == 1
        assert asyncio.run(hook.drain()) == 1
        [done] = hook.spool.deliveries("done")
        assert done.key == UUID and done.run_id == "run-2"


class TestKeyReuse:
    def test_two_pushes_sharing_an_event_uuid_each_start_their_run(self, spec, caplog):
        started = Recorder()
        client = TestClient(create_app(spec, SECRET, started))
        first = post(client, PUSH)
        second_push = push(after="1" * 40, checkout_sha="1" * 40)
        with caplog.at_level(logging.WARNING, logger="acrvpc.webhook"):
            second = post(client, second_push)  # the same X-Gitlab-Event-UUID (a recursively triggered hook)
        assert first.json()["flow_run_id"] == "run-1" and second.json()["flow_run_id"] == "run-2"
        (p1, k1), (p2, k2) = started.calls
        assert (p1["sha"], p2["sha"]) == (PUSH["checkout_sha"], "1" * 40) and k1 != k2
        assert k1 == f"gitlab:{UUID}" and k2.startswith(f"gitlab:{UUID}~")
        assert any("reused by a different push" in r.getMessage() for r in caplog.records)
        # each one's resend is answered with its own run and starts nothing
        assert post(client, second_push).json()["flow_run_id"] == "run-2"
        assert post(client, PUSH).json()["flow_run_id"] == "run-1"
        assert len(started.calls) == 2


class TestTrailingSlash:
    def test_a_hook_url_with_a_trailing_slash_is_served_not_redirected(self, spec):
        started = Recorder()
        client = TestClient(create_app(spec, SECRET, started), follow_redirects=False)
        answer = client.post("/hooks/gitlab/", content=json.dumps(PUSH), headers=headers())
        assert answer.status_code == 202 and answer.json()["flow_run_id"] == "run-1"
        assert client.get("/healthz/").status_code == 404  # no bare 307 anywhere


class TestSecret:
    @pytest.mark.parametrize(
        "stored", [SECRET + "\n", SECRET + "\r\n", f"  {SECRET}\t", SECRET[:5] + "\n" + SECRET[5:]]
    )
    def test_a_secret_stored_with_line_breaks_or_spaces_accepts_what_gitlab_sends(self, spec, stored):
        started = Recorder()
        client = TestClient(create_app(spec, stored, started))
        sent = SECRET  # GitLab: remove_line_breaks(token); HTTP: trimmed
        assert post(client, PUSH, headers(token=sent)).status_code == 202
        assert post(client, PUSH, headers(token="wrong")).status_code == 401

    def test_the_resolved_secret_is_normalised_for_the_receiver_and_for_registering(self, spec, monkeypatch, sandbox):
        from tasks.webhook_hook import SECRET_ENV, resolve_webhook_secret, webhook_hook
        from tests.integration.test_webhook_hook import BILLING, hook_spec, hooks_of

        monkeypatch.setenv(SECRET_ENV, SECRET + "\n")
        assert resolve_webhook_secret(spec) == SECRET
        webhook_hook.fn(hook_spec())
        [hook] = hooks_of(sandbox, BILLING)
        assert hook.token == SECRET

    def test_normalize_secret_is_gitlabs_remove_line_breaks_then_trim(self):
        assert normalize_secret("a\r\nb\nc \n") == "abc"


class TestDefaults:
    def test_a_300_push_minute_from_one_address_is_all_accepted(self, spec):
        started = Recorder()
        client = TestClient(create_app(spec, SECRET, started))  # the spec's default rate limit
        t0 = time.monotonic()
        statuses = [
            post(client, PUSH, headers(**{"X-Gitlab-Event-UUID": f"busy-{i:03d}"})).status_code for i in range(300)
        ]
        assert statuses == [202] * 300, {s: statuses.count(s) for s in set(statuses)}
        assert len(started.calls) == 300
        print(f"300 pushes from one address in {time.monotonic() - t0:.1f} s: all 202")

    def test_the_body_cap_is_gitlabs_25_mb(self):
        assert MAX_BODY == 25 * 1024 * 1024


def big_push(size: int) -> bytes:
    """A GitLab push whose 20 commits list changed paths (a vendoring commit) up to about ``size`` bytes."""
    body = copy.deepcopy(PUSH)
    commit = body["commits"][0]
    per_commit = size // 20
    paths = [f"vendor/github.com/example/module-{i:06d}/internal/pkg/file_{i:06d}.go" for i in range(per_commit // 70)]
    body["commits"] = [{**commit, "id": f"{n:040x}", "added": paths} for n in range(20)]
    return json.dumps(body).encode()


async def call_asgi(app, body: bytes, *, declare_length: bool = True, chunk: int = 64 * 1024):
    """POST ``body`` to the app as a server would hand it over (chunks); returns (status, answer, bytes read)."""
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers(**{"X-Gitlab-Event-UUID": f"big-{len(body)}"}).items()]
    if declare_length:
        hdrs.append((b"content-length", str(len(body)).encode()))
    view = memoryview(body)
    read = 0

    async def receive():
        nonlocal read
        await asyncio.sleep(0)  # the network: other requests run meanwhile
        if read >= len(body):
            return {"type": "http.request", "body": b"", "more_body": False}
        part = bytes(view[read : read + chunk])
        read += len(part)
        return {"type": "http.request", "body": part, "more_body": read < len(body)}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hooks/gitlab",
        "raw_path": b"/hooks/gitlab",
        "query_string": b"",
        "root_path": "",
        "headers": hdrs,
        "client": ("10.0.0.7", 40000),
        "server": ("127.0.0.1", 8480),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    return status, answer, read


def peak_of(coro_factory) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = asyncio.run(coro_factory())
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


class TestLargeBodies:
    def test_a_5_mb_push_is_accepted_with_bounded_memory(self, spec):
        body = big_push(5 * MB)
        assert 4.5 * MB < len(body) < 5.5 * MB
        started = Recorder()
        app = create_app(spec, SECRET, started)
        (status, answer, read), peak = peak_of(lambda: call_asgi(app, body))
        assert status == 202 and answer["flow_run_id"] == "run-1", answer
        assert started.calls[0][0]["sha"] == PUSH["checkout_sha"]
        print(f"5 MB push ({len(body) / MB:.1f} MB): peak {peak / MB:.1f} MB traced in the receiver")
        assert peak < 8 * len(body), peak

    def test_concurrent_large_pushes_are_parsed_at_most_two_at_a_time(self, spec):
        body = big_push(5 * MB)
        app = create_app(spec, SECRET, Recorder())

        async def one():
            return (await call_asgi(app, body))[0]

        _, single = peak_of(one)

        async def six():
            return await asyncio.gather(*(call_asgi(app, body) for _ in range(6)))

        answers, peak = peak_of(six)
        assert [a[0] for a in answers] == [202] * 6
        print(f"six 5 MB pushes at once: peak {peak / MB:.1f} MB (one alone: {single / MB:.1f} MB)")
        assert peak < 1.8 * single, (peak, single)  # six at once unguarded: 2.4x (measured)

    def test_a_30_mb_body_is_refused_before_a_byte_is_read(self, spec):
        started = Recorder()
        app = create_app(spec, SECRET, started)
        body = b" " * (30 * MB)
        (status, answer, read), peak = peak_of(lambda: call_asgi(app, body))
        assert status == 413 and "body over" in answer["error"] and read == 0 and started.calls == []
        assert peak < 1 * MB, peak

    def test_a_30_mb_body_without_a_length_is_cut_off_at_the_cap_unparsed(self, spec):
        started = Recorder()
        app = create_app(spec, SECRET, started)
        body = b"{" + b" " * (30 * MB)
        (status, answer, read), peak = peak_of(lambda: call_asgi(app, body, declare_length=False, chunk=1024 * 1024))
        assert status == 413 and started.calls == []
        assert read <= MAX_BODY + 1024 * 1024
        print(f"30 MB chunked body: refused after {read / MB:.1f} MB, peak {peak / MB:.1f} MB")
        assert peak < MAX_BODY * 2.5


class TestHealthz:
    def test_healthz_reports_prefect_and_the_spool(self, spec):
        async def down() -> bool:
            raise httpx.ConnectError("refused")

        hook = receiver(spec, Recorder(fail=httpx.ConnectError("refused")), probe=down)
        client = TestClient(hook.app())
        post(client, PUSH)
        post(client, PUSH, headers(**{"X-Gitlab-Event-UUID": "other"}))
        hook.spool.dead("other", classify(prefect_error(422, "too large")))
        assert client.get("/healthz").json() == {
            "status": "degraded",
            "prefect": {"reachable": False},
            "deliveries": {"pending": 1, "dead": 1},
        }


class TestSharedSpool:
    def test_deliveries_and_replay_work_on_a_spool_another_process_holds_open(self, spec, tmp_path):
        path = tmp_path / "spool.sqlite3"
        hook = receiver(spec, Recorder(fail=prefect_error(422, "too large")), spool=Spool(path))
        client = TestClient(hook.app())
        post(client, PUSH)
        recorder = Recorder(fail=httpx.ConnectError("refused"))
        hook.start_run = recorder
        post(client, PUSH, headers(**{"X-Gitlab-Event-UUID": "queued-1"}))
        # a writer holding the database in another connection while the CLI runs (busy timeout, not an error)
        held = sqlite3.connect(path, timeout=10, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        cli = [sys.executable, "-m", "acrvpc", "webhook"]
        proc = subprocess.Popen(
            [*cli, "deliveries", "--json", "--spool", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        held.execute("COMMIT")
        out, errors = proc.communicate(timeout=120)
        assert proc.returncode == 0, errors
        listed = json.loads(out)
        assert isinstance(listed, list)
        assert {(d["key"], d["state"]) for d in listed} == {(UUID, "dead"), ("queued-1", "pending")}
        dead = next(d for d in listed if d["state"] == "dead")
        assert (dead["status"], dead["last_error"], dead["attempts"], dead["run_id"]) == (422, "too large", 1, None)
        assert dead["project"] == "platform/billing-api" and dead["sha"] == PUSH["checkout_sha"]
        assert set(dead) == {
            "key",
            "project",
            "ref",
            "sha",
            "state",
            "attempts",
            "last_error",
            "status",
            "run_id",
            "received",
        }
        replay = subprocess.run(
            [*cli, "replay", UUID, "--spool", str(path)], capture_output=True, text=True, timeout=120
        )
        assert replay.returncode == 0, replay.stderr
        assert hook.spool.get(UUID).state == "pending"
        again = subprocess.run(
            [*cli, "replay", UUID, "--spool", str(path)], capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 2 and "only dead letters" in again.stdout + again.stderr
        bad = subprocess.run(
            [*cli, "deliveries", "--state", "stuck", "--spool", str(path)], capture_output=True, text=True, timeout=120
        )
        assert bad.returncode == 2 and "pending, dead, done" in bad.stdout + bad.stderr


class TestServeWithPrefectDown:
    """``acrvpc webhook serve --deployment`` when Prefect does not answer (the e2e test covers a SPEC file)."""

    def test_it_starts_from_the_spec_it_last_read_and_exits_2_without_one(self, tmp_path):
        import os
        import socket

        import yaml

        from tests.conftest import EXAMPLE_SPEC

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]  # nothing listens there
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            **os.environ,
            "PREFECT_API_URL": f"http://127.0.0.1:{dead_port}/api",
            "PYTHONUNBUFFERED": "1",
            "ACRVPC_WEBHOOK_SECRET": SECRET + "\n",
            "PREFECT_HOME": str(tmp_path / "home"),
        }
        spool_path = tmp_path / "spool.sqlite3"
        serve = [
            sys.executable,
            "-m",
            "acrvpc",
            "webhook",
            "serve",
            "--deployment",
            "build-on-push/demo",
            "--port",
            str(port),
            "--spool",
            str(spool_path),
        ]
        # Without a spec read before, it cannot route: exit 2 with the fix
        first = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 2 and "no spec of build-on-push/demo was read before" in first.stdout + first.stderr
        # With the spec it read last time (kept in the spool), it listens and says Prefect is unreachable
        spool = Spool(spool_path)
        spool.remember("spec:build-on-push/demo", json.dumps({"spec": yaml.safe_load(EXAMPLE_SPEC.read_text())}))
        spool.close()
        proc = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 90
            health = None
            while health is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
                except httpx.TransportError:
                    time.sleep(0.3)
            assert health == {
                "status": "degraded",
                "prefect": {"reachable": False},
                "deliveries": {"pending": 0, "dead": 0},
            }, proc.poll()
            answer = httpx.post(
                f"http://127.0.0.1:{port}/hooks/gitlab", content=json.dumps(PUSH), headers=headers(), timeout=10
            )
            assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert "does not answer" in out and SECRET not in out
