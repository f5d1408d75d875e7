"""Sandbox fault injection, observed through the real SDK clients and python-gitlab.

Each fault kind is checked from the client's side (the exception class and code the SDK raises),
in the call log, and through :func:`acrvpc.cloud.errors.is_retryable` (transient vs fatal, issue 5).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import gitlab
import pytest
import requests
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_ecs20140526 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from darabonba.exceptions import UnretryableException
from typer.testing import CliRunner

from acrvpc.cli.app import app
from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import CrBusinessError, check_cr, is_retryable
from acrvpc.sandbox.defaults import GITLAB_TOKEN
from tests.conftest import ROOT

DESCRIBE = "DescribeSecurityGroups"


@pytest.fixture(autouse=True)
def no_client_limit(monkeypatch):
    """These tests look at the sandbox's quotas, so the client-side limiter stays out of the way."""
    for product in ("ECS", "CR", "VPC"):
        monkeypatch.setenv(f"ACRVPC_QPS_{product}", "0")


@pytest.fixture
def faults(sandbox):
    return sandbox.world.faults


@pytest.fixture
def ecs(sandbox, spec):
    return cloud.ecs_client(spec.region, cloud.resolve_access_key(None))


@pytest.fixture
def gl(sandbox):
    return cloud.gitlab_client("http://gitlab.example", cloud.resolve_gitlab_token("gitlab-token"))


def describe(ecs, spec) -> Any:
    return ecs.describe_security_groups(m.DescribeSecurityGroupsRequest(region_id=spec.region))


def outcome(call) -> str:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test compares outcomes
        return getattr(exc, "code", None) or type(exc).__name__
    return "ok"


def logged(sandbox, action: str) -> list[tuple[int, str]]:
    return [(c["status"], c["code"]) for c in sandbox.world.calls.list() if c["action"] == action]


class TestQuotas:
    def test_product_quota_answers_throttling_user_with_the_documented_body(self, sandbox, faults, ecs, spec):
        # given: ECS may take 2 calls per second
        faults.set_quota(2, product="ecs")
        # when: three calls in a row
        describe(ecs, spec)
        describe(ecs, spec)
        with pytest.raises(ClientException) as info:
            describe(ecs, spec)
        # then: the third is throttled, as the SDK sees a real throttling answer
        exc = info.value
        assert (exc.code, exc.status_code) == ("Throttling.User", 400)
        assert {"RequestId", "HostId", "Code", "Message", "Recommend"} <= set(exc.data)
        assert is_retryable(exc)
        assert logged(sandbox, DESCRIBE) == [(200, ""), (200, ""), (400, "Throttling.User")]

    def test_action_quota_leaves_other_actions_alone(self, faults, ecs, spec):
        # given: one call per second per action
        faults.update({"qps_per_action": 1})
        describe(ecs, spec)
        # when / then: the same action is throttled, another action is not
        assert outcome(lambda: describe(ecs, spec)) == "Throttling.User"
        ecs.describe_network_interfaces(m.DescribeNetworkInterfacesRequest(region_id=spec.region))

    def test_one_action_quota_of_one_product(self, faults, ecs, spec):
        # given: a quota on ECS DescribeSecurityGroups only
        faults.set_quota(1, product="ecs", action=DESCRIBE)
        describe(ecs, spec)
        # when / then
        assert outcome(lambda: describe(ecs, spec)) == "Throttling.User"
        assert (
            outcome(lambda: ecs.describe_network_interfaces(m.DescribeNetworkInterfacesRequest(region_id=spec.region)))
            == "ok"
        )
        assert faults.quotas() == {"ecs DescribeSecurityGroups": 1.0}

    def test_quota_refills_in_real_time_not_sandbox_time(self, sandbox, faults, ecs, spec):
        # given: 20 calls per second, no burst, the only token spent
        faults.set_quota(20, product="ecs", burst=1)
        describe(ecs, spec)
        # when: sandbox time jumps an hour ahead
        sandbox.world.clock.advance(3600)
        # then: still throttled; 60 ms of real time later the next token is there
        assert outcome(lambda: describe(ecs, spec)) == "Throttling.User"
        time.sleep(0.06)
        assert outcome(lambda: describe(ecs, spec)) == "ok"

    def test_retry_after_setting_gives_a_throttling_exception(self, faults, ecs, spec):
        # given: throttling answers carry x-acs-retry-after
        faults.update({"throttle_retry_after": True})
        faults.set_quota(1, product="ecs")
        describe(ecs, spec)
        # when
        with pytest.raises(ThrottlingException) as info:
            describe(ecs, spec)
        # then: the SDK reads the wait (ms) from the header
        assert info.value.code == "Throttling.User"
        assert 0 < info.value.retry_after <= 1000
        assert is_retryable(info.value)


class TestErrorRate:
    def test_every_call_answers_5xx_at_rate_one(self, sandbox, faults, ecs, spec):
        # given
        faults.update({"error_rate": 1.0, "seed": 1})
        # when
        with pytest.raises(ServerException) as info:
            describe(ecs, spec)
        # then
        assert (info.value.code, info.value.status_code) in {("ServiceUnavailable", 503), ("InternalError", 500)}
        assert is_retryable(info.value)
        assert logged(sandbox, DESCRIBE) == [(info.value.status_code, info.value.code)]

    def test_a_seed_gives_the_same_sequence_again(self, faults, ecs, spec):
        # given: half the calls fail, seeded
        faults.update({"error_rate": 0.5, "seed": 7})
        first = [outcome(lambda: describe(ecs, spec)) for _ in range(12)]
        # when: seeded again
        faults.update({"seed": 7})
        second = [outcome(lambda: describe(ecs, spec)) for _ in range(12)]
        # then: same outcomes, and both kinds occur
        assert first == second
        assert "ok" in first and {"ServiceUnavailable", "InternalError"} & set(first)

    def test_scope_limits_the_rates_to_some_products(self, faults, ecs, spec):
        # given: every call of CR fails, and only CR
        faults.update({"error_rate": 1.0, "scope": ["cr"]})
        cr = cloud.cr_client(spec.region, cloud.resolve_access_key(None))
        # when / then
        assert outcome(lambda: describe(ecs, spec)) == "ok"
        assert outcome(lambda: cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))) in {
            "ServiceUnavailable",
            "InternalError",
        }


class TestDroppedConnections:
    def test_dropped_connection_is_a_retryable_transport_error(self, sandbox, faults, ecs, spec):
        # given: the next call's connection is closed without an answer
        faults.drop_next(DESCRIBE)
        # when
        with pytest.raises(UnretryableException) as info:
            describe(ecs, spec)
        # then: a transport failure, transient; the call after it is answered
        assert info.value.inner_exception is not None
        assert is_retryable(info.value)
        describe(ecs, spec)
        assert logged(sandbox, DESCRIBE) == [(0, "Dropped"), (200, "")]

    def test_drop_rate_drops_gitlab_connections_too(self, sandbox, faults, gl):
        # given
        faults.update({"drop_rate": 1.0})
        # when
        with pytest.raises(requests.exceptions.ConnectionError) as info:
            gl.http_get("/user")
        # then
        assert is_retryable(info.value)
        assert logged(sandbox, "GET /user") == [(0, "Dropped")]


class TestSlowAnswers:
    def test_answer_past_the_read_timeout_is_a_retryable_timeout_but_the_write_lands(self, sandbox, faults, spec):
        # given: a client that waits 150 ms, and a create answered 400 ms late
        ecs = cloud.ecs_client(spec.region, cloud.resolve_access_key(None), read_timeout_ms=150)
        faults.slow_next("CreateSecurityGroup", delay_ms=400)
        request = m.CreateSecurityGroupRequest(
            region_id=spec.region, vpc_id=spec.network.vpc_id, security_group_name="late", client_token="late-1"
        )
        # when
        with pytest.raises(UnretryableException) as info:
            ecs.create_security_group(request)
        # then: the client timed out (transient), yet the group exists once the late answer went out
        assert is_retryable(info.value)
        time.sleep(0.4)
        assert [g.name for g in sandbox.world.ecs.groups.values() if g.name == "late"] == ["late"]
        assert logged(sandbox, "CreateSecurityGroup") == [(200, "Slow")]

    def test_a_slow_call_does_not_hold_up_the_others(self, faults, ecs, spec):
        # given: one call answered 800 ms late, in another thread
        faults.slow_next(DESCRIBE, delay_ms=800)
        slow = threading.Thread(target=describe, args=(ecs, spec))
        slow.start()
        time.sleep(0.05)
        # when
        started = time.monotonic()
        ecs.describe_network_interfaces(m.DescribeNetworkInterfacesRequest(region_id=spec.region))
        # then: answered while the slow one still sleeps (it holds no world lock)
        assert time.monotonic() - started < 0.4
        slow.join()

    def test_gitlab_slow_answer_times_out(self, faults, gl):
        # given
        faults.slow_next("GET /user", delay_ms=400)
        # when
        with pytest.raises(requests.exceptions.Timeout) as info:
            gl.http_get("/user", timeout=0.15)
        # then
        assert is_retryable(info.value)


class TestFailNext:
    @pytest.mark.parametrize("code,status", [("Forbidden.RAM", 403), ("InvalidParameter", 400)])
    def test_fatal_codes_are_not_retryable(self, faults, ecs, spec, code, status):
        # given
        faults.fail_next(DESCRIBE, 1, code)
        # when
        with pytest.raises(ClientException) as info:
            describe(ecs, spec)
        # then
        assert (info.value.code, info.value.status_code) == (code, status)
        assert not is_retryable(info.value)

    def test_soft_cr_error_is_a_fatal_business_error(self, faults, spec):
        # given: CR answers 200 + IsSuccess=false once
        faults.fail_next("GetInstance", 1, "INSTANCE_NOT_EXIST", product="cr", soft=True)
        cr = cloud.cr_client(spec.region, cloud.resolve_access_key(None))
        # when
        with pytest.raises(CrBusinessError) as info:
            check_cr(cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)), "GetInstance")
        # then
        assert info.value.code == "INSTANCE_NOT_EXIST"
        assert not is_retryable(info.value)

    def test_product_filter_spares_the_other_products(self, faults, ecs, spec):
        # given: the next VPC call of the name fails, not ECS's
        faults.fail_next(DESCRIBE, 1, "ServiceUnavailable", product="vpc")
        # when / then
        assert outcome(lambda: describe(ecs, spec)) == "ok"
        assert faults.settings()["pending"][0]["product"] == "vpc"


class TestGitLabFaults:
    def test_quota_answers_429_with_retry_after(self, sandbox, faults, gl):
        # given
        faults.set_quota(1, product="gitlab")
        gl.http_get("/user")
        # when
        reply = requests.get(f"{sandbox.url}/api/v4/user", headers={"PRIVATE-TOKEN": GITLAB_TOKEN}, timeout=5)
        with pytest.raises(gitlab.exceptions.GitlabHttpError) as info:
            gl.http_get("/user", obey_rate_limit=False)
        # then
        assert reply.status_code == 429 and int(reply.headers["Retry-After"]) >= 1
        assert info.value.response_code == 429
        assert is_retryable(info.value)

    def test_python_gitlab_waits_out_the_quota_by_itself(self, sandbox, faults, gl, monkeypatch):
        # given: two calls per second on the route, and in-place retries on (the suite turns them off;
        # python-gitlab's max_retries follows ACRVPC_CALL_RETRIES, read per call)
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        faults.set_quota(2, product="gitlab", action="GET /user")
        gl.http_get("/user")
        gl.http_get("/user")
        # when: a third call (429, Retry-After: 1, then the client retries)
        user = gl.http_get("/user")
        # then
        assert user["username"]
        assert [code for _, code in logged(sandbox, "GET /user")] == ["", "", "429", ""]

    def test_5xx_rate_answers_502_or_503(self, faults, gl):
        # given
        faults.update({"error_rate": 1.0, "seed": 2})
        # when
        with pytest.raises(gitlab.exceptions.GitlabHttpError) as info:
            gl.http_get("/user")
        # then
        assert info.value.response_code in (502, 503)
        assert is_retryable(info.value)

    def test_injected_401_is_fatal(self, faults, gl):
        # given
        faults.fail_next("GET /user", 1, "401")
        # when
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as info:
            gl.http_get("/user")
        # then
        assert info.value.response_code == 401
        assert not is_retryable(info.value)


class TestAdminRoutes:
    def post(self, sandbox, route: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{sandbox.url}/_sandbox/faults/{route}", json=body, timeout=5)

    def test_settings_are_set_and_read_back(self, sandbox):
        # when
        reply = self.post(sandbox, "settings", {"error_rate": 0.1, "drop_rate": 0.1, "seed": 7, "qps": 10})
        # then
        assert reply.status_code == 200
        state = requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()
        assert (state["error_rate"], state["drop_rate"], state["seed"], state["qps"]) == (0.1, 0.1, 7, 10.0)

    @pytest.mark.parametrize("body", [{"error_rate": 0.7, "drop_rate": 0.7}, {"qps": -1}, {"nope": 1}])
    def test_bad_settings_answer_400_and_change_nothing(self, sandbox, body):
        # when
        reply = self.post(sandbox, "settings", body)
        # then
        assert reply.status_code == 400 and reply.json()["error"]
        assert sandbox.world.faults.settings()["error_rate"] == 0.0

    def test_quota_drop_slow_and_fail_routes_arm_faults(self, sandbox, ecs, spec):
        # when
        replies = [
            self.post(sandbox, "quota", {"product": "vpc", "qps": 3}),
            self.post(sandbox, "drop", {"action": DESCRIBE}),
            self.post(sandbox, "slow", {"action": "GetInstance", "delay_ms": 10}),
            self.post(sandbox, "fail", {"action": "GET /user", "code": "503", "count": 2}),
        ]
        # then
        assert [r.status_code for r in replies] == [200, 200, 200, 200]
        state = requests.get(f"{sandbox.url}/_sandbox/faults", timeout=5).json()
        assert state["quotas"] == {"vpc": 3.0}
        assert [(p["kind"], p["action"], p["remaining"]) for p in state["pending"]] == [
            ("drop", DESCRIBE, 1),
            ("slow", "GetInstance", 1),
            ("error", "GET /user", 2),
        ]
        assert outcome(lambda: describe(ecs, spec)) == "UnretryableException"

    def test_fail_route_without_action_is_refused(self, sandbox):
        assert self.post(sandbox, "fail", {"code": "InternalError"}).status_code == 400

    def test_clear_removes_every_fault(self, sandbox, ecs, spec):
        # given
        self.post(sandbox, "settings", {"error_rate": 1.0})
        self.post(sandbox, "drop", {"action": DESCRIBE})
        # when
        reply = self.post(sandbox, "clear", {})
        # then
        assert reply.json()["error_rate"] == 0.0 and reply.json()["pending"] == []
        assert outcome(lambda: describe(ecs, spec)) == "ok"


class TestSandboxCommand:
    def test_options_set_the_faults_of_the_served_sandbox(self):
        # given: `acrvpc sandbox` with fault options, on a free port
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "acrvpc",
                "sandbox",
                "--port",
                "0",
                "--qps",
                "5",
                "--qps-per-action",
                "2",
                "--error-rate",
                "0.1",
                "--drop-rate",
                "0.05",
                "--seed",
                "11",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = proc.stdout.readline().split()[-1]
            # when
            state = requests.get(f"{url}/_sandbox/faults", timeout=5).json()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        # then
        assert (state["qps"], state["qps_per_action"], state["error_rate"], state["drop_rate"], state["seed"]) == (
            5.0,
            2.0,
            0.1,
            0.05,
            11,
        )

    def test_rates_out_of_range_are_refused_before_listening(self):
        # when
        result = CliRunner().invoke(app, ["sandbox", "--port", "0", "--error-rate", "0.8", "--drop-rate", "0.5"])
        # then
        assert result.exit_code == 2
