"""The GitLab webhook receiver over ASGI (starlette's TestClient), no Prefect server.

Starting a run is the receiver's constructor argument: these tests pass a recording function; the
e2e test (tests/e2e/test_webhook.py) goes through the real Prefect server.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import time
import warnings

import pytest

with warnings.catch_warnings():  # starlette 1.x asks for httpx2; the httpx-based client works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from deployments.webhook import MAX_BODY, WebhookReceiver, create_app
from deployments.webhook_spool import Spool, SpoolDrainer
from tests.conftest import EXAMPLE_SPEC
from tests.webhook_payloads import PUSH, tag_push

SECRET = "s3cret-token-for-tests"
UUID = "7b9d7bb8-6f4e-4c8e-9d3a-2a8e3cbd2f10"


def push(**changes) -> dict:
    body = copy.deepcopy(PUSH)
    project = changes.pop("project", None)
    body.update(changes)
    if project:
        body["project"]["path_with_namespace"] = project
    return body


def headers(event: str = "Push Hook", token: str | None = SECRET, **extra: str) -> dict[str, str]:
    out = {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": UUID, "Content-Type": "application/json"}
    if token is not None:
        out["X-Gitlab-Token"] = token
    out.update(extra)
    return out


class Recorder:
    """The receiver's start_run: records each call and answers a run id."""

    def __init__(self, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[dict, str]] = []
        self.fail, self.delay = fail, delay

    async def __call__(self, parameters: dict, idempotency_key: str) -> str:
        self.calls.append((parameters, idempotency_key))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return f"run-{len(self.calls)}"


@pytest.fixture
def started() -> Recorder:
    return Recorder()


@pytest.fixture
def client(spec, started) -> TestClient:
    return TestClient(create_app(spec, SECRET, started))


def post(client: TestClient, body, hdrs: dict[str, str] | None = None):
    return client.post("/hooks/gitlab", content=json.dumps(body), headers=hdrs if hdrs is not None else headers())


class TestToken:
    def test_missing_token_is_refused_and_starts_nothing(self, client, started):
        answer = post(client, PUSH, headers(token=None))
        assert answer.status_code == 401 and started.calls == []

    def test_wrong_token_is_refused_and_starts_nothing(self, client, started):
        answer = post(client, PUSH, headers(token=SECRET + "x"))
        assert answer.status_code == 401 and started.calls == []
        assert SECRET not in answer.text

    def test_token_is_checked_before_the_body_is_looked_at(self, client, started):
        answer = client.post(
            "/hooks/gitlab",
            content=b"x" * (MAX_BODY + 10),
            headers={"Content-Type": "text/plain", "X-Gitlab-Event": "Push Hook"},
        )
        assert answer.status_code == 401

    def test_comparison_is_constant_time(self, client, started, monkeypatch):
        # Given a spy on hmac.compare_digest (the standard library's constant-time comparison)
        seen: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a, b):
            seen.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        # When a delivery arrives with a wrong token
        answer = post(client, PUSH, headers(token="guess"))
        # Then the token was compared with it, against the secret
        assert answer.status_code == 401
        assert seen == [(b"guess", SECRET.encode())]

    def test_an_empty_secret_is_refused_at_construction(self, spec, started):
        with pytest.raises(ValueError):
            create_app(spec, "", started)


class TestContentType:
    def test_other_content_type_gets_415(self, client, started):
        answer = post(client, PUSH, headers(**{"Content-Type": "application/x-www-form-urlencoded"}))
        assert answer.status_code == 415 and started.calls == []

    def test_json_with_charset_is_accepted(self, client, started):
        answer = post(client, PUSH, headers(**{"Content-Type": "application/json; charset=utf-8"}))
        assert answer.status_code == 202 and len(started.calls) == 1


class TestBodyCap:
    def test_declared_oversized_body_gets_413(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started, max_body=1024 * 1024))
        body = json.dumps({**PUSH, "pad": "x" * 1024 * 1024})
        answer = client.post("/hooks/gitlab", content=body, headers=headers())
        assert answer.status_code == 413 and started.calls == []

    def test_streamed_oversized_body_without_length_gets_413(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started, max_body=1024 * 1024))

        def chunks():
            yield b'{"pad": "'
            for _ in range(20):
                yield b"x" * 65536
            yield b'"}'

        answer = client.post("/hooks/gitlab", content=chunks(), headers=headers())
        assert answer.status_code == 413 and started.calls == []

    def test_a_body_just_under_the_cap_is_read(self, spec, started):
        small = TestClient(create_app(spec, SECRET, started, max_body=len(json.dumps(PUSH))))
        assert post(small, PUSH).status_code == 202
        assert post(small, {**PUSH, "pad": "x"}).status_code == 413


class TestMalformed:
    def test_invalid_json_gets_400(self, client, started):
        answer = client.post("/hooks/gitlab", content=b'{"object_kind": "push",', headers=headers())
        assert answer.status_code == 400 and started.calls == []
        assert answer.json() == {"error": "the body is not valid JSON"}

    def test_a_json_array_gets_400(self, client, started):
        assert post(client, [PUSH]).status_code == 400 and started.calls == []

    def test_no_event_header_gets_400(self, client, started):
        hdrs = headers()
        del hdrs["X-Gitlab-Event"]
        assert post(client, PUSH, hdrs).status_code == 400 and started.calls == []

    def test_a_push_without_its_project_gets_400_naming_the_field(self, client, started):
        body = copy.deepcopy(PUSH)
        del body["project"]["path_with_namespace"]
        answer = post(client, body)
        assert answer.status_code == 400 and started.calls == []
        assert "project.path_with_namespace" in answer.json()["error"]

    def test_header_and_object_kind_must_agree(self, client, started):
        answer = post(client, PUSH, headers(event="Tag Push Hook"))
        assert answer.status_code == 400 and started.calls == []

    def test_error_answers_carry_no_internals(self, client):
        answer = client.post("/hooks/gitlab", content=b"\xff\xfe", headers=headers())
        assert answer.status_code == 400
        assert "Traceback" not in answer.text and "File " not in answer.text


class TestIgnored:
    @pytest.mark.parametrize("event", ["Issue Hook", "Merge Request Hook", "Pipeline Hook", "System Hook"])
    def test_other_event_kinds_are_ignored(self, client, started, event):
        answer = post(client, {"object_kind": "issue"}, headers(event=event))
        assert answer.status_code == 202 and answer.json()["status"] == "ignored"
        assert started.calls == []

    def test_branch_deletion_is_ignored(self, client, started):
        answer = post(client, push(after="0" * 40, checkout_sha=None))
        assert answer.status_code == 202 and "deleted" in answer.json()["reason"]
        assert started.calls == []

    def test_unknown_project_is_ignored(self, client, started):
        answer = post(client, push(project="secret/vault-tools"))
        assert answer.status_code == 202 and answer.json() == {
            "status": "ignored",
            "reason": "no route for secret/vault-tools refs/heads/main",
        }
        assert started.calls == []

    def test_unrouted_branch_is_ignored(self, client, started):
        answer = post(client, push(ref="refs/heads/feature/x"))
        assert answer.status_code == 202 and answer.json()["status"] == "ignored" and started.calls == []

    def test_tag_matching_no_rule_is_ignored(self, client, started):
        answer = post(client, tag_push("v9.0"), headers(event="Tag Push Hook"))
        assert answer.status_code == 202 and answer.json()["status"] == "ignored" and started.calls == []

    def test_a_tag_named_like_a_routed_branch_is_ignored(self, client, started):
        answer = post(client, tag_push("main", project="platform/billing-api"), headers(event="Tag Push Hook"))
        assert answer.status_code == 202 and answer.json()["status"] == "ignored" and started.calls == []


class TestRouting:
    def test_push_to_a_routed_branch_starts_one_run(self, client, started):
        answer = post(client, PUSH)
        assert answer.status_code == 202
        assert answer.json() == {
            "status": "accepted",
            "flow_run_id": "run-1",
            "deployment": "build-on-push/webhook",
            "repository": "apps/billing-api",
            "rule": "latest",
        }
        assert started.calls == [
            (
                {
                    "project": "platform/billing-api",
                    "ref": "refs/heads/main",
                    "sha": PUSH["checkout_sha"],
                    "event_id": UUID,
                },
                f"gitlab:{UUID}",
            )
        ]

    def test_tag_push_matching_a_tag_route_starts_its_rule(self, client, started):
        answer = post(client, tag_push("release-v1.2"), headers(event="Tag Push Hook"))
        assert answer.status_code == 202 and answer.json()["repository"] == "apps/web-frontend"
        assert answer.json()["rule"] == "release"
        assert started.calls[0][0]["ref"] == "refs/tags/release-v1.2"

    def test_idempotency_key_header_wins_over_the_event_uuid(self, client, started):
        post(client, PUSH, headers(**{"Idempotency-Key": "delivery-0001"}))
        assert started.calls[0][1] == "gitlab:delivery-0001"
        assert started.calls[0][0]["event_id"] == "delivery-0001"

    def test_a_redelivery_gets_the_same_run_without_asking_prefect_again(self, client, started):
        first, again = post(client, PUSH), post(client, PUSH)
        assert [key for _, key in started.calls] == [f"gitlab:{UUID}"]
        assert first.json()["flow_run_id"] == again.json()["flow_run_id"] == "run-1"

    def test_without_delivery_headers_the_key_comes_from_the_push(self, client, started):
        hdrs = headers()
        del hdrs["X-Gitlab-Event-UUID"]
        post(client, PUSH, hdrs)
        assert started.calls[0][1] == f"gitlab:42:refs/heads/main:{PUSH['before']}:{PUSH['after']}"

    def test_spec_path_is_passed_when_given(self, spec, started):
        routed = TestClient(create_app(spec, SECRET, started, spec_path="specs/prod.yaml"))
        post(routed, PUSH)
        assert started.calls[0][0]["spec_path"] == "specs/prod.yaml"


class TestStartFailure:
    """Prefect slow or unreachable: the delivery is kept in the spool and its run created later."""

    def test_prefect_unreachable_queues_the_delivery_without_internals(self, spec):
        failing = Recorder(fail=ConnectionError("connect to 10.0.0.5:4200 refused"))
        receiver = WebhookReceiver(spec, SECRET, failing)
        answer = post(TestClient(receiver.app()), PUSH)
        assert answer.status_code == 202 and "10.0.0.5" not in answer.text
        assert answer.json()["status"] == "queued" and answer.json()["delivery"] == UUID
        assert receiver.spool.pending() == 1

    def test_a_slow_start_is_answered_queued_in_time(self, spec):
        slow = Recorder(delay=2.0)
        answer = post(TestClient(create_app(spec, SECRET, slow, start_timeout=0.2)), PUSH)
        assert answer.status_code == 202 and answer.json()["status"] == "queued"

    def test_the_drain_creates_the_queued_run_once_prefect_is_back(self, spec):
        # given a delivery queued while Prefect was down
        recorder = Recorder(fail=ConnectionError("down"))
        receiver = WebhookReceiver(spec, SECRET, recorder)
        post(TestClient(receiver.app()), PUSH)
        # when Prefect answers again and the drainer runs
        recorder.fail = None
        created = asyncio.run(receiver.drain())
        # then its run exists (same idempotency key), and a resend is answered with it
        assert created == 1 and receiver.spool.pending() == 0
        assert [key for _, key in recorder.calls] == [f"gitlab:{UUID}"] * 2
        again = post(TestClient(receiver.app()), PUSH)
        assert again.json()["flow_run_id"] == "run-2" and len(recorder.calls) == 2

    def test_the_spool_survives_a_restart(self, spec, tmp_path):
        # given a receiver that queued a delivery and then stopped
        down = Recorder(fail=ConnectionError("down"))
        post(TestClient(WebhookReceiver(spec, SECRET, down, spool=Spool(tmp_path / "spool.db")).app()), PUSH)
        # when a new receiver starts on the same spool
        up = Recorder()
        restarted = WebhookReceiver(spec, SECRET, up, spool=Spool(tmp_path / "spool.db"))
        assert restarted.spool.pending() == 1
        assert asyncio.run(restarted.drain()) == 1
        # then the run was created with the delivery's parameters and key
        [(parameters, key)] = up.calls
        assert key == f"gitlab:{UUID}" and parameters["project"] == PUSH["project"]["path_with_namespace"]

    def test_the_drainer_thread_creates_queued_runs(self, spec):
        recorder = Recorder(fail=ConnectionError("down"))
        receiver = WebhookReceiver(spec, SECRET, recorder)
        post(TestClient(receiver.app()), PUSH)
        recorder.fail = None
        drainer = SpoolDrainer(receiver.spool, recorder, interval=0.05, grace=0.0).start()
        try:
            deadline = time.monotonic() + 10
            while receiver.spool.pending() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            drainer.stop()
        assert receiver.spool.pending() == 0 and len(recorder.calls) == 2


class TestBurst:
    def test_a_burst_is_answered_in_time_and_every_delivery_gets_exactly_one_run(self, spec):
        # given a Prefect that creates one run per 0.2 s at most 2 at a time (much slower than the burst)
        created: dict[str, str] = {}

        async def slow_start(parameters: dict, key: str) -> str:
            await asyncio.sleep(0.2)
            return created.setdefault(key, f"run-{len(created) + 1}")  # Prefect's idempotency key

        receiver = WebhookReceiver(
            spec, SECRET, slow_start, start_timeout=0.5, start_concurrency=2, rate_limit="10000/minute"
        )
        app = receiver.app()

        async def burst() -> list:
            import httpx

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:

                async def one(i: int):
                    t0 = time.monotonic()
                    answer = await client.post(
                        "/hooks/gitlab",
                        content=json.dumps(PUSH),
                        headers=headers(**{"X-Gitlab-Event-UUID": f"burst-{i:03d}"}),
                    )
                    return answer, time.monotonic() - t0

                return await asyncio.gather(*(one(i) for i in range(40)))

        # when 40 distinct deliveries arrive at once
        answers = asyncio.run(burst())
        # then every one is answered 202 within the budget (some accepted, the rest queued) ...
        assert all(a.status_code == 202 for a, _ in answers)
        assert max(seconds for _, seconds in answers) < 0.5 + 0.5
        assert {a.json()["status"] for a, _ in answers} <= {"accepted", "queued"}
        assert any(a.json()["status"] == "queued" for a, _ in answers)
        # ... and after the drain, each delivery has exactly one run
        asyncio.run(receiver.drain())
        assert receiver.spool.pending() == 0
        assert sorted(created) == [f"gitlab:burst-{i:03d}" for i in range(40)]
        # and a resend of all 40 creates nothing new
        resent = asyncio.run(burst())
        assert len(created) == 40 and {a.json()["status"] for a, _ in resent} == {"accepted"}


class TestHealthz:
    def test_healthz_answers_ok(self, client):
        assert client.get("/healthz").json() == {
            "status": "ok",
            "prefect": {"reachable": None},
            "deliveries": {"pending": 0, "dead": 0},
        }

    def test_get_on_the_hook_is_not_allowed(self, client, started):
        assert client.get("/hooks/gitlab").status_code == 405 and started.calls == []


class TestServeCommand:
    def test_without_a_prefect_api_url_it_exits_2_with_the_fix(self, monkeypatch):
        from prefect.settings import PREFECT_API_URL, temporary_settings
        from typer.testing import CliRunner

        from acrvpc.cli.app import app

        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        # nor in the settings context (the session's test harness, when one ran in this process, sets one)
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            result = CliRunner().invoke(app, ["webhook", "serve", "examples/sandbox.yaml", "--port", "0"])
        assert result.exit_code == 2
        assert "PREFECT_API_URL" in result.output

    def test_an_invalid_spec_exits_2_naming_the_field(self, tmp_path):
        from typer.testing import CliRunner

        from acrvpc.cli.app import app

        bad = tmp_path / "spec.yaml"
        bad.write_text((EXAMPLE_SPEC.read_text()).replace("rule: release}", "rule: nightly}"))
        result = CliRunner().invoke(app, ["webhook", "serve", str(bad)])
        assert result.exit_code == 2
        assert "webhook.routes[2].rule" in result.output

    @pytest.mark.parametrize(
        ("option", "value", "says"),
        [
            ("--rate-limit", "fast", "60/minute"),
            ("--rate-limit", "0/second", "60/minute"),
            ("--trusted-proxy", "proxy.internal", "CIDR"),
        ],
    )
    def test_a_bad_hardening_option_exits_2_with_the_form(self, option, value, says):
        from typer.testing import CliRunner

        from acrvpc.cli.app import app

        result = CliRunner().invoke(app, ["webhook", "serve", "examples/sandbox.yaml", option, value])
        assert result.exit_code == 2 and says in result.output

    def test_an_invalid_signing_token_exits_2_without_echoing_it(self, monkeypatch):
        from typer.testing import CliRunner

        from acrvpc.cli.app import app

        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        monkeypatch.setenv("ACRVPC_WEBHOOK_SIGNING_SECRET", "not-a-whsec-token")
        result = CliRunner().invoke(app, ["webhook", "serve", "examples/sandbox.yaml"])
        assert result.exit_code == 2
        assert "whsec_" in result.output and "not-a-whsec-token" not in result.output
