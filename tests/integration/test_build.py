"""tasks/build.py against the sandbox: builds followed to the end with a sandbox-clock sleep."""

from __future__ import annotations

import pytest
import requests

from acrvpc import cloud
from acrvpc.errors import CrBusinessError, PipelineError
from acrvpc.outcomes import BoundRule
from tasks.binding import bind_repository
from tasks.build import run_build


@pytest.fixture
def world(sandbox, monkeypatch):
    """A frozen sandbox clock, and a build network that reaches GitLab (the ECS side's seam)."""
    sandbox.world.clock.set_scale(0)
    monkeypatch.setattr(sandbox.world.ecs, "reaches", lambda account_id, ip, port: (True, ""))
    return sandbox.world


@pytest.fixture
def cr(sandbox, spec):
    return cloud.cloud_clients(spec).cr


@pytest.fixture
def bound(world, spec, cr):
    return bind_repository(cr, spec, spec.repositories[0])


class SandboxTime:
    """A ``sleep``/``clock`` pair on the sandbox clock: sleeping advances the world."""

    def __init__(self, world) -> None:
        self.world = world
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.world.clock.advance(seconds)

    def clock(self) -> float:
        return self.world.clock.now()


def calls(sandbox, action: str) -> list[dict]:
    found = requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]
    return [c for c in found if c["action"] == action]


def follow(cr, spec, bound, world, **kw):
    t = SandboxTime(world)
    seen = []
    outcome = run_build(cr, spec, bound, bound.rules[0], on_log=seen.append, sleep=t.sleep, clock=t.clock, **kw)
    return outcome, seen, t


class TestRunBuildSuccess:
    def test_followed_to_success_with_every_line_once(self, sandbox, world, spec, cr, bound):
        # given pages smaller than what one poll brings
        world.cr.log_page_size = 4
        # when
        outcome, seen, _ = follow(cr, spec, bound, world)
        # then
        record = world.cr.records[outcome.build_record_id]
        expected = [(i + 1, line.stage, line.message) for i, line in enumerate(record.lines)]
        assert [(x.number, x.stage, x.message) for x in seen] == expected
        assert outcome.status == "SUCCESS" and outcome.succeeded
        assert outcome.image == "apps/billing-api:latest"
        assert outcome.seconds == pytest.approx(19.0)
        assert outcome.log_lines == len(expected)
        assert outcome.log_tail == [f"{s} {msg}" for _, s, msg in expected][-30:]
        assert outcome.changes == [f"CreateBuildRecordByRule {outcome.build_record_id}"]
        assert outcome.resources == {"build": outcome.build_record_id, "image": "apps/billing-api:latest"}
        assert (outcome.repository, outcome.repo_id, outcome.build_rule_id) == \
            ("apps/billing-api", bound.repo_id, bound.rules[0].build_rule_id)

    def test_poll_interval_grows_to_thirty_seconds(self, world, spec, cr, bound):
        # given a slow build
        world.cr.stages = [{"name": "GIT_CLONE", "seconds": 3}, {"name": "BUILD", "seconds": 140}]
        # when
        outcome, _, t = follow(cr, spec, bound, world)
        # then
        assert outcome.status == "SUCCESS"
        assert t.sleeps[:4] == [1, 1.5, 2.25, 3.375]
        assert max(t.sleeps) == 30 and t.sleeps[-2] == 30

    def test_status_case_and_unknown_values(self, world, spec, cr, bound, monkeypatch):
        # given a service that answers lower case and an undocumented state first
        real = world.cr.status

        def status(record):
            value = real(record)
            return "Queued" if value == "PENDING" else value.lower()

        monkeypatch.setattr(world.cr, "status", status)
        # when
        outcome, _, _ = follow(cr, spec, bound, world)
        # then
        assert outcome.status == "SUCCESS"
        assert outcome.notes == ["unknown build status 'Queued' treated as running"]


class TestRunBuildFailure:
    def test_failed_build_returns_its_outcome(self, world, spec, cr, bound):
        world.cr.fail_repos.add("apps/billing-api")
        outcome, seen, _ = follow(cr, spec, bound, world)
        assert outcome.status == "FAILED" and not outcome.succeeded
        assert any("did not complete successfully" in line for line in outcome.log_tail)
        assert outcome.log_tail[-1] == "BUILD build stage failed"
        assert len(seen) == outcome.log_lines

    def test_unreachable_gitlab_fails_at_clone(self, world, spec, cr, bound, monkeypatch):
        monkeypatch.setattr(world.ecs, "reaches", lambda account_id, ip, port: (False, "egress rule missing"))
        outcome, _, _ = follow(cr, spec, bound, world)
        assert outcome.status == "FAILED"
        assert any("Failed to connect to 192.168.1.20 port 80" in line for line in outcome.log_tail)

    def test_start_refused_raises_the_code(self, world, spec, cr, bound):
        ghost = BoundRule(build_rule_id="crbr-ghost", push_type="GIT_BRANCH", push_name="main", image_tag="x")
        with pytest.raises(CrBusinessError) as err:
            run_build(cr, spec, bound, ghost, sleep=SandboxTime(world).sleep, clock=SandboxTime(world).clock)
        assert err.value.code == "BUILD_RULE_NOT_EXIST"


class TestRunBuildTimeout:
    def test_timeout_cancels_the_build(self, sandbox, world, spec, cr, bound):
        # given a spec that allows 6 seconds
        short = spec.model_copy(update={"build": spec.build.model_copy(update={"timeout_minutes": 0.1})})
        # when
        outcome, _, _ = follow(cr, short, bound, world)
        # then
        assert outcome.status == "TIMEOUT"
        assert outcome.changes == [f"CreateBuildRecordByRule {outcome.build_record_id}",
                                   f"CancelRepoBuildRecord {outcome.build_record_id}"]
        assert world.cr.status(world.cr.records[outcome.build_record_id]) == "CANCELED"
        assert len(calls(sandbox, "CancelRepoBuildRecord")) == 1
        assert "canceled" in outcome.log_tail[-1]


class TestRunBuildPollErrors:
    def test_transient_poll_errors_are_retried_in_place(self, sandbox, world, spec, cr, bound):
        world.faults.fail_next("GetRepoBuildRecordStatus", 2, "ServiceUnavailable")
        world.faults.fail_next("ListRepoBuildRecordLog", 1, "Throttling.User")
        outcome, seen, _ = follow(cr, spec, bound, world)
        assert outcome.status == "SUCCESS"
        assert [x.number for x in seen] == list(range(1, outcome.log_lines + 1))
        assert len(calls(sandbox, "CreateBuildRecordByRule")) == 1

    def test_persistent_poll_errors_are_not_retryable(self, sandbox, world, spec, cr, bound):
        world.faults.fail_next("GetRepoBuildRecordStatus", 50, "ServiceUnavailable")
        with pytest.raises(PipelineError) as err:
            follow(cr, spec, bound, world)
        assert err.value.code == "BUILD_POLL_FAILED" and err.value.retryable is False
        assert len(calls(sandbox, "CreateBuildRecordByRule")) == 1
