"""The webhook receiver's hardening over ASGI: signed deliveries, rate limits, error answers, OpenAPI.

GitLab >= 19 signs deliveries with a ``whsec_`` signing token (Standard Webhooks: ``webhook-id``,
``webhook-timestamp``, ``webhook-signature``). Deliveries are signed here with the
``standardwebhooks`` library, as a sender would. Starting a run is the recording ``start_run`` of
test_webhook_receiver.py: a refusal must leave it with zero calls.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from deployments.webhook import create_app
from tests.integration.test_webhook_receiver import SECRET, Recorder, headers, post
from tests.webhook_payloads import PUSH

SIGNING = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER_KEY = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = json.dumps(PUSH)
DELIVERY = "c5b3c1e2-5d1f-4d0e-9a51-0a6b7f1f2e3d"


def signed(
    body: str = BODY, *, key: str = SIGNING, delivery: str = DELIVERY, at: float | None = None, token: str | None = None
) -> dict[str, str]:
    """GitLab's headers for a delivery signed with ``key`` at ``at`` (default now)."""
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    out = headers(
        token=token,
        **{"Idempotency-Key": delivery, "webhook-id": delivery, "webhook-timestamp": str(int(when.timestamp()))},
    )
    out["webhook-signature"] = Webhook(key).sign(delivery, when, body)
    return out


@pytest.fixture
def started() -> Recorder:
    return Recorder()


@pytest.fixture
def signing_client(spec, started) -> TestClient:
    """A receiver that authenticates deliveries by signature only (no X-Gitlab-Token secret)."""
    return TestClient(create_app(spec, None, started, signing_secret=SIGNING))


def deliver(client: TestClient, hdrs: dict[str, str], body: str | bytes = BODY):
    return client.post("/hooks/gitlab", content=body, headers=hdrs)


class TestSignedDelivery:
    def test_a_good_signature_starts_one_run_keyed_by_the_webhook_id(self, signing_client, started):
        answer = deliver(signing_client, signed())
        assert answer.status_code == 202 and answer.json()["flow_run_id"] == "run-1"
        assert [key for _, key in started.calls] == [f"gitlab:{DELIVERY}"]

    def test_a_missing_signature_is_refused(self, signing_client, started):
        hdrs = signed()
        del hdrs["webhook-signature"]
        answer = deliver(signing_client, hdrs)
        assert answer.status_code == 401 and "webhook-signature" in answer.json()["error"]
        assert started.calls == []

    def test_no_signature_headers_at_all_is_refused(self, signing_client, started):
        answer = deliver(signing_client, headers(token=None))
        assert answer.status_code == 401 and started.calls == []

    def test_the_token_alone_does_not_pass_a_signing_receiver(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started, signing_secret=SIGNING))
        answer = deliver(client, headers(token=SECRET))
        assert answer.status_code == 401 and started.calls == []

    def test_a_wrong_signature_is_refused(self, signing_client, started):
        hdrs = signed()
        hdrs["webhook-signature"] = "v1," + base64.b64encode(b"\0" * 32).decode()
        answer = deliver(signing_client, hdrs)
        assert answer.status_code == 401 and "does not match" in answer.json()["error"]
        assert started.calls == []

    def test_a_changed_body_is_refused(self, signing_client, started):
        tampered = BODY.replace("refs/heads/main", "refs/heads/main ")
        answer = deliver(signing_client, signed(), tampered)
        assert answer.status_code == 401 and started.calls == []

    def test_a_delivery_re_signed_with_another_key_is_refused(self, signing_client, started):
        answer = deliver(signing_client, signed(key=OTHER_KEY))
        assert answer.status_code == 401 and started.calls == []

    def test_a_replay_outside_the_window_is_refused(self, signing_client, started):
        # Given a delivery correctly signed ten minutes ago (the window is five)
        answer = deliver(signing_client, signed(at=time.time() - 600))
        # Then it is refused as a replay and starts nothing
        assert answer.status_code == 401 and "webhook-timestamp" in answer.json()["error"]
        assert started.calls == []

    def test_a_timestamp_from_the_future_is_refused(self, signing_client, started):
        answer = deliver(signing_client, signed(at=time.time() + 600))
        assert answer.status_code == 401 and started.calls == []

    def test_a_shorter_configured_window_applies(self, spec, started):
        client = TestClient(create_app(spec, None, started, signing_secret=SIGNING, replay_window=60))
        assert deliver(client, signed(at=time.time() - 120)).status_code == 401
        assert deliver(client, signed(at=time.time() - 30)).status_code == 202
        assert len(started.calls) == 1

    def test_a_replay_inside_the_window_starts_no_second_run(self, signing_client, started):
        # Given a signed delivery that started a run
        first = deliver(signing_client, signed())
        # When the same signed delivery arrives again
        again = deliver(signing_client, signed())
        # Then it answers the same run without starting another
        assert first.status_code == again.status_code == 202
        assert again.json()["flow_run_id"] == first.json()["flow_run_id"]
        assert len(started.calls) == 1

    @pytest.mark.parametrize("signature", ["v1", "v1,***", "v1,", ",", "v2,abc v1", "x" * 5000])
    def test_a_malformed_signature_is_a_401_not_a_crash(self, signing_client, started, signature):
        hdrs = signed()
        hdrs["webhook-signature"] = signature
        answer = deliver(signing_client, hdrs)
        assert answer.status_code == 401 and started.calls == []

    def test_a_non_numeric_timestamp_is_refused(self, signing_client, started):
        hdrs = signed()
        hdrs["webhook-timestamp"] = "nan"
        assert deliver(signing_client, hdrs).status_code == 401 and started.calls == []

    def test_a_signed_non_utf8_body_is_refused_not_crashed(self, signing_client, started):
        answer = deliver(signing_client, signed(), b'{"\xff": 1}')
        assert answer.status_code == 401 and started.calls == []

    def test_both_secret_and_signature_are_checked_when_both_are_configured(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started, signing_secret=SIGNING))
        assert deliver(client, signed(token=None)).status_code == 401
        assert deliver(client, signed(token=SECRET)).status_code == 202
        assert len(started.calls) == 1

    def test_an_invalid_signing_token_fails_at_construction(self, spec, started):
        with pytest.raises(ValueError):
            create_app(spec, None, started, signing_secret="whsec_!!!")

    def test_neither_secret_nor_signing_token_fails_at_construction(self, spec, started):
        with pytest.raises(ValueError):
            create_app(spec, None, started)


class TestRateLimit:
    def test_over_the_limit_gets_429_with_retry_after_and_starts_nothing(self, spec, started):
        # Given a receiver allowing 3 deliveries a minute per source
        client = TestClient(create_app(spec, SECRET, started, rate_limit="3/minute"))
        answers = [post(client, PUSH, headers(**{"X-Gitlab-Event-UUID": f"delivery-{i}"})) for i in range(4)]
        # Then the fourth is refused with a short JSON and a Retry-After in whole seconds
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert answers[3].json() == {"error": "too many deliveries from this source; retry later"}
        assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
        assert len(started.calls) == 3

    def test_refused_deliveries_count_too(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started, rate_limit="2/minute"))
        assert [post(client, PUSH, headers(token="guess")).status_code for _ in range(3)] == [401, 401, 429]

    def test_each_source_has_its_own_budget(self, spec, started):
        app = create_app(spec, SECRET, started, rate_limit="1/minute")
        first, second = TestClient(app, client=("192.0.2.1", 5000)), TestClient(app, client=("192.0.2.2", 5000))
        assert post(first, PUSH).status_code == 202 and post(first, PUSH).status_code == 429
        assert post(second, PUSH).status_code == 202

    def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started, rate_limit="1/minute"), client=("192.0.2.1", 5000))
        assert post(client, PUSH, headers(**{"X-Forwarded-For": "198.51.100.1"})).status_code == 202
        assert post(client, PUSH, headers(**{"X-Forwarded-For": "198.51.100.2"})).status_code == 429

    def test_behind_a_trusted_proxy_the_forwarded_client_is_the_source(self, spec, started):
        app = create_app(spec, SECRET, started, rate_limit="1/minute", trusted_proxies=["10.0.0.0/24"])
        proxy = TestClient(app, client=("10.0.0.5", 5000))
        one = headers(**{"X-Forwarded-For": "198.51.100.1"})
        two = headers(**{"X-Forwarded-For": "203.0.113.9, 198.51.100.2"})  # a client-supplied hop, then ours
        assert post(proxy, PUSH, one).status_code == 202
        assert post(proxy, PUSH, two).status_code == 202
        assert post(proxy, PUSH, one).status_code == 429

    def test_the_spec_sets_the_default_limit(self, spec, started):
        tight = spec.model_copy(update={"webhook": spec.webhook.model_copy(update={"rate_limit": "1/minute"})})
        client = TestClient(create_app(tight, SECRET, started))
        assert [post(client, PUSH).status_code for _ in range(2)] == [202, 429]


class TestErrorAnswers:
    def test_unknown_paths_get_a_json_404(self, spec, started):
        answer = TestClient(create_app(spec, SECRET, started)).get("/admin")
        assert answer.status_code == 404 and answer.json() == {"error": "not found"}

    def test_a_wrong_method_gets_a_json_405_with_allow(self, spec, started):
        answer = TestClient(create_app(spec, SECRET, started)).put("/hooks/gitlab")
        assert answer.status_code == 405 and answer.json() == {"error": "method not allowed"}
        assert "POST" in answer.headers["allow"]

    def test_an_unexpected_exception_is_a_500_json_with_the_detail_only_in_the_log(self, spec, caplog):
        # Given a start_run that answers something that is not a run id (a NaN cannot be sent as JSON)
        async def broken(parameters, key):
            return float("nan")

        client = TestClient(create_app(spec, SECRET, broken), raise_server_exceptions=False)
        # When a routed push arrives
        with caplog.at_level(logging.ERROR, logger="acrvpc.webhook"):
            answer = post(client, PUSH)
        # Then the sender sees a bare 500 and the log has the exception
        assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
        assert "Traceback" not in answer.text and "ValueError" not in answer.text
        assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)

    @pytest.mark.parametrize(
        "body",
        ["[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000, '{"project_id": ' + "9" * 5000 + "}"],
    )
    def test_nasty_json_is_a_400(self, spec, started, body):
        answer = TestClient(create_app(spec, SECRET, started)).post("/hooks/gitlab", content=body, headers=headers())
        assert answer.status_code == 400 and started.calls == []

    def test_an_overlong_delivery_id_is_a_400(self, spec, started):
        client = TestClient(create_app(spec, SECRET, started))
        answer = post(client, PUSH, headers(**{"Idempotency-Key": "k" * 1000}))
        assert answer.status_code == 400 and started.calls == []


class TestOpenApi:
    def test_the_receiver_describes_its_endpoints(self, spec, started):
        doc = TestClient(create_app(spec, SECRET, started)).get("/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        hook = doc["paths"]["/hooks/gitlab"]["post"]
        assert {"202", "400", "401", "413", "415", "429", "500", "503"} <= set(hook["responses"])
        assert {"PushEvent", "TagPushEvent", "EventProject", "Error"} <= set(doc["components"]["schemas"])
        assert "X-Gitlab-Token secret" in hook["description"]

    def test_a_signing_receiver_says_it_needs_a_signature(self, signing_client):
        doc = signing_client.get("/openapi.json").json()
        assert "Standard Webhooks signature" in doc["paths"]["/hooks/gitlab"]["post"]["description"]
