"""Fuzzing the webhook receiver in process (ASGI, no network): no 5xx, no crash, no hang, nothing started wrongly.

- Schemathesis generates requests from the receiver's own ``GET /openapi.json`` (positive cases that
  fit the documented payloads, and negative ones that break the schema), sent with the right
  X-Gitlab-Token so that bodies reach the parser.
- A signing receiver gets schemathesis' headers as they come (signatures included): all refused.
- Hypothesis sends arbitrary bytes and JSON correctly signed (Standard Webhooks) so that the
  signature passes and the parser sees them.

Bounded for CI (about 1,300 cases in under a minute; schemathesis' generation is the slow part):
each test has a number of examples, scaled by ``ACRVPC_FUZZ_SCALE`` (default 1), and a per-example
deadline (``FUZZ_DEADLINE_MS``); a hang is cut by the test timeout. For a deeper run:
``ACRVPC_FUZZ_SCALE=20 python -m pytest tests/fuzz``. An input that ever breaks the
receiver goes into ``tests/fuzz/corpus/receiver/`` (replayed by test_corpus.py).
"""

from __future__ import annotations

import base64
import json
import os
import time
import warnings
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from standardwebhooks import Webhook

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from acrvpc.domain.spec import load_spec
from deployments.gitlab_events import PUSH_HOOK, TAG_PUSH_HOOK
from deployments.webhook import create_app
from tests.conftest import EXAMPLE_SPEC

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(240)]

SCALE = float(os.environ.get("ACRVPC_FUZZ_SCALE", "1"))
FUZZ_DEADLINE_MS = 5000  # per example; generous so a loaded CI machine does not flake
SECRET = "fuzz-secret-token"
SIGNING = "whsec_" + base64.b64encode(b"f" * 32).decode()
EVENT_FOR_KIND = {"push": PUSH_HOOK, "tag_push": TAG_PUSH_HOOK}


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=FUZZ_DEADLINE_MS,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


class Starts:
    """The receiver's start_run: counts calls, answers a run id."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, parameters: dict, key: str) -> str:
        self.calls.append(key)
        return f"run-{len(self.calls)}"


SPEC = load_spec(EXAMPLE_SPEC)
TOKEN_STARTS, SIGNED_STARTS = Starts(), Starts()
TOKEN_APP = create_app(SPEC, SECRET, TOKEN_STARTS, rate_limit="1000000/second")
SIGNED_APP = create_app(SPEC, None, SIGNED_STARTS, signing_secret=SIGNING, rate_limit="1000000/second")
TOKEN_HOOK = schemathesis.openapi.from_asgi("/openapi.json", TOKEN_APP)["/hooks/gitlab"]["POST"]
SIGNED_SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", SIGNED_APP)


def check_answer(status: int, text: str, content_type: str) -> None:
    """Every answer: below 500, a short JSON object, and an error answer without internals."""
    assert status < 500, f"{status}: {text[:500]}"
    assert content_type.startswith("application/json"), content_type
    body = json.loads(text)
    assert isinstance(body, dict)
    if status >= 400:
        assert isinstance(body.get("error"), str) and len(text) < 600, text[:600]
        assert "Traceback" not in text and 'File "' not in text


def with_token(case) -> dict:
    headers = {**(case.headers or {}), "X-Gitlab-Token": SECRET}
    kind = case.body.get("object_kind") if isinstance(case.body, dict) else None
    if kind in EVENT_FOR_KIND:  # the header GitLab sends with that body, so routing is reached
        headers["X-Gitlab-Event"] = EVENT_FOR_KIND[kind]
    return headers


class TestSchemathesis:
    @given(case=TOKEN_HOOK.as_strategy(GenerationMode.POSITIVE))
    @fuzz_settings(300)
    def test_documented_deliveries_never_get_a_5xx(self, case):
        case.headers = with_token(case)
        before = len(TOKEN_STARTS.calls)
        response = case.call_and_validate()  # schemathesis' checks: no 5xx, documented status, type and schema
        event(f"status {response.status_code}")
        check_answer(response.status_code, response.text, response.headers.get("content-type", [""])[0])
        assert len(TOKEN_STARTS.calls) - before == (1 if response.json().get("status") == "accepted" else 0)

    @given(case=TOKEN_HOOK.as_strategy(GenerationMode.NEGATIVE))
    @fuzz_settings(200)
    def test_undocumented_deliveries_never_get_a_5xx_or_start_a_run(self, case):
        case.headers = with_token(case)
        before = len(TOKEN_STARTS.calls)
        # other event kinds are answered 202 "ignored" by design, so schema-violating data may be accepted
        response = case.call_and_validate(excluded_checks=[negative_data_rejection])
        event(f"status {response.status_code}")
        check_answer(response.status_code, response.text, response.headers.get("content-type", [""])[0])
        if response.status_code != 202:
            assert len(TOKEN_STARTS.calls) == before

    @pytest.mark.parametrize(
        ("path", "method"), [("/hooks/gitlab", "POST"), ("/healthz", "GET"), ("/openapi.json", "GET")]
    )
    def test_a_signing_receiver_refuses_every_generated_delivery(self, path, method):
        operation = SIGNED_SCHEMA[path][method]

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
            )
        )
        @fuzz_settings(100)
        def run(case):
            # a valid-looking delivery is still refused without the signature: 401 is the point here
            response = case.call_and_validate(excluded_checks=[negative_data_rejection, positive_data_acceptance])
            check_answer(response.status_code, response.text, response.headers.get("content-type", [""])[0])
            if path == "/hooks/gitlab":
                assert response.status_code in (400, 401, 413, 415), response.text

        run()
        assert SIGNED_STARTS.calls == []


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=30,
)
PUSHY = st.fixed_dictionaries(
    {
        "object_kind": st.sampled_from(["push", "tag_push", "issue", ""]),
        "ref": st.sampled_from(["refs/heads/main", "refs/tags/release-v1", "refs/heads/", "main", ""]) | st.text(),
        "before": st.text(max_size=41),
        "after": st.sampled_from(["0" * 40, "a" * 40]) | st.text(max_size=41),
        "project_id": st.integers() | st.text(max_size=5),
        "project": st.fixed_dictionaries(
            {
                "id": st.integers(),
                "path_with_namespace": st.sampled_from(
                    ["platform/billing-api", "platform/web-frontend", "PLATFORM/BILLING-API/", "a"]
                )
                | st.text(),
            }
        )
        | JSON_VALUES,
    },
    optional={
        "checkout_sha": st.none() | st.text(max_size=41),
        "commits": JSON_VALUES,
        "total_commits_count": JSON_VALUES,
    },
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    PUSHY.map(lambda v: json.dumps(v).encode()),
)


def sign(body: bytes, delivery: str) -> dict[str, str]:
    when = datetime.fromtimestamp(time.time(), tz=UTC)
    signature = Webhook(SIGNING).sign(delivery, when, body.decode("utf-8", "replace"))
    return {"webhook-id": delivery, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}


class TestSignedBodies:
    @given(
        body=BODIES,
        kind=st.sampled_from([PUSH_HOOK, TAG_PUSH_HOOK, "Issue Hook", ""]),
        delivery=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    )
    @fuzz_settings(600)
    def test_any_signed_body_is_answered_without_a_5xx(self, body, kind, delivery):
        headers = {"Content-Type": "application/json", "X-Gitlab-Event": kind, **sign(body, delivery)}
        with TestClient(SIGNED_APP) as client:
            response = client.post("/hooks/gitlab", content=body, headers=headers)
        event(f"status {response.status_code}")
        check_answer(response.status_code, response.text, response.headers.get("content-type", ""))
