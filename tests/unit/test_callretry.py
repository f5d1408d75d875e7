"""Call-level retries: only calls that are safe to repeat, only transient failures."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException

from acrvpc.cloud import callretry
from acrvpc.cloud import clients as cloud


class TestSafeToRepeat:
    @pytest.mark.parametrize(
        "action",
        [
            "DescribeNetworkInterfaces",
            "GetRepository",
            "ListRepoBuildRule",
            "CancelRepoBuildRecord",
            "AuthorizeSecurityGroupEgress",
            "RevokeSecurityGroupEgress",
            "DeleteSecurityGroup",
            "ModifySecurityGroupPolicy",
            "UpdateRepoSourceCodeRepo",
            "CreateNamespace",
            "CreateRepository",
            "CreateRepoSourceCodeRepo",
            "CreateNetworkInterfacePermission",
        ],
    )
    def test_reads_and_idempotent_writes(self, action):
        assert callretry.safe_to_repeat(action, {})

    @pytest.mark.parametrize(
        "action", ["CreateBuildRecordByRule", "CreateRepoBuildRule", "CreateSecurityGroup", "CreateNetworkInterface"]
    )
    def test_writes_that_could_happen_twice(self, action):
        assert not callretry.safe_to_repeat(action, {})

    def test_a_client_token_makes_a_create_safe(self):
        assert callretry.safe_to_repeat("CreateSecurityGroup", {"ClientToken": "acrvpc-x"})

    def test_bad_setting_names_the_variable(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "many")
        with pytest.raises(ValueError, match="ACRVPC_CALL_RETRIES"):
            callretry.attempts_after_first()


class TestAgainstTheSandbox:
    @pytest.fixture
    def cr(self, sandbox, spec, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        return cloud.cr_client(spec.region, cloud.resolve_access_key(None))

    def test_transient_failures_of_a_read_are_retried_in_place(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("GetInstance", count=2, code="ServiceUnavailable")
        body = cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)).body
        assert body.instance_status == "RUNNING"
        assert [c["code"] for c in sandbox.world.calls.list()] == ["ServiceUnavailable", "ServiceUnavailable", ""]

    def test_gives_up_after_the_configured_attempts(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("GetInstance", count=10, code="ServiceUnavailable")
        with pytest.raises(ServerException):
            cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert len(sandbox.world.calls.list()) == 4

    def test_fatal_errors_are_not_retried(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("GetInstance", count=2, code="Forbidden.RAM")
        with pytest.raises(ClientException):
            cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert len(sandbox.world.calls.list()) == 1

    def test_starting_a_build_is_never_repeated(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("CreateBuildRecordByRule", count=1, code="ServiceUnavailable")
        with pytest.raises(ServerException):
            cr.create_build_record_by_rule(
                cr_models.CreateBuildRecordByRuleRequest(
                    instance_id=spec.instance_id, repo_id="crr-x", build_rule_id="crbr-x"
                )
            )
        assert len(sandbox.world.calls.list()) == 1


class TestBudget:
    def test_backoff_alone_stays_far_below_the_budget(self):
        assert all(callretry.backoff(n) <= callretry.MAX_DELAY_S for n in range(10))
        assert sum(callretry.BASE_DELAY_S * 2**n for n in range(3)) <= 1.4 + 1e-9

    def test_a_throttling_hint_is_waited_when_longer_than_the_backoff(self):
        exc = ThrottlingException(code="Throttling.User", status_code=400, retry_after=5000)
        assert callretry.retry_after_s(exc) == 5.0
        assert callretry.next_pause(0, exc, waited=0.0) == 5.0

    def test_a_hint_that_does_not_fit_in_the_budget_stops_the_retries(self):
        exc = ThrottlingException(code="Throttling.User", status_code=400, retry_after=5000)
        assert callretry.next_pause(1, exc, waited=callretry.BACKOFF_BUDGET_S - 4) is None

    def test_no_hint_without_the_header(self):
        assert callretry.retry_after_s(ServerException(code="ServiceUnavailable", status_code=503)) is None


def _answer(status: int, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response.request = requests.Request("GET", "http://gitlab.example/api/v4/user").prepare()
    return response


class TestGitLabRetryAfter:
    def test_a_long_retry_after_is_capped_to_the_budget_share(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        assert callretry.cap_retry_after(_answer(429, **{"Retry-After": "3600"})).headers["Retry-After"] == "20"

    def test_a_short_retry_after_is_kept(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        assert callretry.cap_retry_after(_answer(503, **{"Retry-After": "2"})).headers["Retry-After"] == "2"

    def test_an_http_date_becomes_seconds(self, monkeypatch):
        # python-gitlab would fail on int("Wed, 21 Oct ...")
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        when = email.utils.formatdate(time.time() + 3600, usegmt=True)
        assert callretry.cap_retry_after(_answer(429, **{"Retry-After": when})).headers["Retry-After"] == "20"

    def test_ratelimit_reset_is_capped_too(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        answer = callretry.cap_retry_after(_answer(429, **{"RateLimit-Reset": str(int(time.time()) + 3600)}))
        assert answer.headers["Retry-After"] == "20"

    def test_successful_answers_are_left_alone(self):
        assert "Retry-After" not in callretry.cap_retry_after(_answer(200, **{"RateLimit-Reset": "1"})).headers
