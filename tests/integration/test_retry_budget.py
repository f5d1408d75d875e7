"""The retry policy, layer by layer, against a sandbox that fails every call (acrvpc/cloud/callretry.py).

Each test counts the requests one logical call sent in the sandbox's call log and the backoff it
waited: at most 1 + ACRVPC_CALL_RETRIES (default 3) = 4 requests and 60 s per call, whatever the
layer (in-place Alibaba Cloud retries, the build poller, python-gitlab), and a non-idempotent
GitLab write is sent once.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_ecs20140526 import models as ecs_models
from gitlab.exceptions import GitlabCreateError, GitlabGetError

from acrvpc.cloud import callretry
from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError, is_retryable
from tasks.binding import bind_repository
from tasks.build import MAX_MISSED_POLLS, poll_schedule, run_build
from tasks.webhook_hook import ensure_project_hooks
from tests.integration.test_webhook_hook import BILLING, SECRET, hook_spec, hooks_of

MAX_REQUESTS = 4
BUDGET_S = 60.0


@pytest.fixture
def paused(monkeypatch):
    """In-place retries on at the default (3), their pauses recorded instead of slept."""
    monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
    pauses: list[float] = []
    monkeypatch.setattr(callretry, "SLEEP", pauses.append, raising=False)
    return pauses


def requests_of(sandbox, action: str) -> list[dict]:
    return [c for c in sandbox.world.calls.list() if c["action"] == action]


def fail_everything(sandbox) -> None:
    sandbox.world.faults.update({"error_rate": 1.0})


class TestAlibabaCloudInPlace:
    def test_a_cr_read_sends_at_most_four_requests(self, sandbox, spec, paused):
        fail_everything(sandbox)
        cr = cloud.cloud_clients(spec).cr
        with pytest.raises(Exception) as caught:
            cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert is_retryable(caught.value)
        assert len(requests_of(sandbox, "GetInstance")) == MAX_REQUESTS
        assert len(paused) == MAX_REQUESTS - 1 and sum(paused) <= BUDGET_S

    def test_an_ecs_client_token_write_sends_at_most_four_requests(self, sandbox, spec, paused):
        fail_everything(sandbox)
        ecs = cloud.cloud_clients(spec).ecs
        with pytest.raises(Exception) as caught:
            ecs.create_security_group(
                ecs_models.CreateSecurityGroupRequest(
                    region_id=spec.region,
                    vpc_id=spec.network.vpc_id,
                    security_group_name="acrvpc-budget",
                    client_token="acrvpc-budget-test",
                )
            )
        assert is_retryable(caught.value)
        sent = requests_of(sandbox, "CreateSecurityGroup")
        assert len(sent) == MAX_REQUESTS
        assert {c["params"].get("ClientToken") for c in sent} == {"acrvpc-budget-test"}
        assert sum(paused) <= BUDGET_S

    def test_the_setting_bounds_the_requests(self, sandbox, spec, paused, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "1")
        fail_everything(sandbox)
        with pytest.raises(Exception) as caught:
            cloud.cloud_clients(spec).cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert is_retryable(caught.value)
        assert len(requests_of(sandbox, "GetInstance")) == 2


class TestThrottlingHint:
    def test_the_retry_after_hint_is_waited(self, sandbox, spec, monkeypatch):
        # given CR's quota at 2 calls/s, throttling answers carrying x-acs-retry-after, and real sleeps
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        pauses: list[float] = []

        def sleep(seconds: float) -> None:
            pauses.append(seconds)
            time.sleep(seconds)

        monkeypatch.setattr(callretry, "SLEEP", sleep, raising=False)
        sandbox.world.faults.update({"throttle_retry_after": True})
        sandbox.world.faults.set_quota(2, product="cr", burst=1)
        cr = cloud.cloud_clients(spec).cr
        request = cr_models.GetInstanceRequest(instance_id=spec.instance_id)
        # when two calls go back to back
        cr.get_instance(request)
        body = cr.get_instance(request).body
        # then the second was throttled once, waited the hint (about 0.5 s, not the 0.2 s backoff) and got through
        assert body.instance_status == "RUNNING"
        codes = [c["code"] for c in requests_of(sandbox, "GetInstance")]
        assert codes == ["", "Throttling.User", ""]
        assert len(pauses) == 1 and 0.3 <= pauses[0] <= 1.0

    def test_a_hint_beyond_the_budget_goes_to_the_task_at_once(self, sandbox, spec, paused):
        # given a quota that frees a token only every 100 s
        sandbox.world.faults.update({"throttle_retry_after": True})
        sandbox.world.faults.set_quota(0.01, product="cr", burst=1)
        cr = cloud.cloud_clients(spec).cr
        request = cr_models.GetInstanceRequest(instance_id=spec.instance_id)
        cr.get_instance(request)
        # when
        with pytest.raises(Exception) as caught:
            cr.get_instance(request)
        # then one request, no wait: the task's retry takes it from here
        assert type(caught.value).__name__ == "ThrottlingException" and is_retryable(caught.value)
        assert len(requests_of(sandbox, "GetInstance")) == 2
        assert paused == []


@pytest.fixture
def world(sandbox, monkeypatch):
    """A frozen sandbox clock, and a build network that reaches GitLab (as tests/integration/test_build.py)."""
    sandbox.world.clock.set_scale(0)
    monkeypatch.setattr(sandbox.world.ecs, "reaches", lambda account_id, ip, port: (True, ""))
    return sandbox.world


class TestBuildPoll:
    def test_a_poll_is_one_logical_call_and_missed_polls_are_bounded(self, sandbox, world, spec, paused):
        # given a build whose status reads all fail
        cr = cloud.cloud_clients(spec).cr
        bound = bind_repository(cr, spec, spec.repositories[0])
        world.faults.fail_next("GetRepoBuildRecordStatus", 1000, "ServiceUnavailable")
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            world.clock.advance(seconds)

        # when
        with pytest.raises(PipelineError) as caught:
            run_build(cr, spec, bound, bound.rules[0], sleep=sleep, clock=world.clock.now)
        # then each poll sent at most 4 requests (the client's in-place retries), the poller only waited its
        # usual poll schedule between polls (no retry loop of its own), and gave up after the missed polls
        assert caught.value.code == "BUILD_POLL_FAILED" and not caught.value.retryable
        per_poll = Counter(c["time"] for c in requests_of(sandbox, "GetRepoBuildRecordStatus"))
        assert list(per_poll.values()) == [MAX_REQUESTS] * (MAX_MISSED_POLLS + 1)
        assert waits == poll_schedule(spec.build.poll_seconds, 3600)[:MAX_MISSED_POLLS]
        assert sum(paused) <= BUDGET_S * (MAX_MISSED_POLLS + 1)
        assert len(requests_of(sandbox, "CreateBuildRecordByRule")) == 1


class TestGitLab:
    def test_a_get_sends_at_most_four_requests(self, sandbox, spec, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        fail_everything(sandbox)
        gl = cloud.gitlab_for(spec)
        started = time.monotonic()
        with pytest.raises(GitlabGetError) as caught:
            gl.projects.get("platform/billing-api")
        took = time.monotonic() - started
        assert caught.value.response_code in (502, 503)
        assert len([c for c in sandbox.world.calls.list() if c["product"] == "gitlab"]) == MAX_REQUESTS
        assert took < 5  # python-gitlab's 0.1 + 0.2 + 0.4 s (its default: 10 retries, 102 s)

    def test_hooks_create_is_sent_once_on_a_5xx_then_the_hooks_are_read_again(self, sandbox, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        spec = hook_spec()
        sandbox.world.faults.fail_next("POST /projects/:id/hooks", 10, "503", product="gitlab")
        with pytest.raises(GitlabCreateError) as caught:
            ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        assert caught.value.response_code == 503 and is_retryable(caught.value)
        routes = [c["action"] for c in sandbox.world.calls.list() if c["product"] == "gitlab"]
        assert routes.count("POST /projects/:id/hooks") == 1
        assert routes[routes.index("POST /projects/:id/hooks") + 1] == "GET /projects/:id/hooks"
        assert hooks_of(sandbox, BILLING) == []

    def test_a_rate_limited_get_waits_retry_after(self, sandbox, spec, monkeypatch):
        # given GitLab's quota at 1 call/s: a second call answers 429 with Retry-After: 1
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        sandbox.world.faults.set_quota(1, product="gitlab", burst=1)
        gl = cloud.gitlab_for(spec)
        gl.projects.get("platform/billing-api")
        started = time.monotonic()
        # when
        gl.projects.get("platform/billing-api")
        # then it waited the hint once and got through
        assert time.monotonic() - started >= 0.9
        assert [c["status"] for c in sandbox.world.calls.list() if c["product"] == "gitlab"] == [200, 429, 200]
