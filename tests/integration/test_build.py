"""tasks/build.py against the sandbox: builds followed to the end with a sandbox-clock sleep."""

from __future__ import annotations

import pytest
import requests

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import CrBusinessError, PipelineError
from acrvpc.domain.outcomes import BoundRule
from tasks.binding import bind_repository
from tasks.build import BuildObserver, run_build


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


class Recorder(BuildObserver):
    """Everything a followed build reports, in order."""

    def __init__(self) -> None:
        self.lines, self.events = [], []

    def started(self, record_id):
        self.events.append(("started", record_id))

    def status(self, status, stage, lines):
        self.events.append(("status", status, stage, lines))

    def log(self, line):
        self.lines.append(line)

    def finished(self, outcome):
        self.events.append(("finished", outcome.status))


def follow(cr, spec, bound, world, **kw):
    t = SandboxTime(world)
    seen = Recorder()
    outcome = run_build(cr, spec, bound, bound.rules[0], observer=seen, sleep=t.sleep, clock=t.clock, **kw)
    return outcome, seen.lines, t


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
        assert (outcome.repository, outcome.repo_id, outcome.build_rule_id) == (
            "apps/billing-api",
            bound.repo_id,
            bound.rules[0].build_rule_id,
        )

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
        assert outcome.changes == [
            f"CreateBuildRecordByRule {outcome.build_record_id}",
            f"CancelRepoBuildRecord {outcome.build_record_id}",
        ]
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


class EndsThenFails:
    """The CR client, except that once a status poll answers the build's end, the reads after it fail
    transiently (more times than the in-place retries cover): a sandbox outage right as the build ends."""

    def __init__(self, cr, world, actions):
        self._cr, self._world, self._actions, self.ended = cr, world, actions, False

    def __getattr__(self, name):
        return getattr(self._cr, name)

    def get_repo_build_record_status(self, request):
        body = self._cr.get_repo_build_record_status(request)
        if not self.ended and str(body.body.build_status).upper() in {"SUCCESS", "FAILED", "CANCELED"}:
            self.ended = True
            for action in self._actions:
                self._world.faults.fail_next(action, 50, "ServiceUnavailable")
        return body


class TestReadsAfterTheEnd:
    def test_a_failing_final_log_page_and_record_are_notes_not_a_failed_run(self, sandbox, world, spec, cr, bound):
        # given a sandbox that fails every log page and the record read once the build has ended
        flaky = EndsThenFails(cr, world, ["ListRepoBuildRecordLog", "GetRepoBuildRecord"])
        # when the build is followed
        outcome, seen, _ = follow(flaky, spec, bound, world)
        # then its known outcome stands, and what could not be read is said
        assert flaky.ended and outcome.status == "SUCCESS"
        assert any(n.startswith("build log lines after line ") and "ServiceUnavailable" in n for n in outcome.notes)
        assert "build record details unavailable: ServiceUnavailable (GetRepoBuildRecord)" in outcome.notes
        assert outcome.image == "apps/billing-api:latest"  # from the bound rule when the record is not read
        assert len(calls(sandbox, "CreateBuildRecordByRule")) == 1

    def test_a_fatal_record_error_after_the_end_still_fails(self, sandbox, world, spec, cr, bound):
        flaky = EndsThenFails(cr, world, [])
        world.faults.fail_next("GetRepoBuildRecord", 1, "Forbidden.RAM")
        with pytest.raises(PipelineError) as err:
            follow(flaky, spec, bound, world)
        assert err.value.code == "BUILD_POLL_FAILED"


class TestPollBackoff:
    def test_status_calls_per_build_minute_stay_within_the_schedule(self, sandbox, world, spec, cr, bound):
        # given a build that hangs, and a 20-minute timeout
        world.cr.hang_repos.add("apps/billing-api")
        long = spec.model_copy(update={"build": spec.build.model_copy(update={"timeout_minutes": 20})})
        start = world.clock.now()
        # when
        outcome, _, _ = follow(cr, long, bound, world)
        # then it was canceled at the timeout ...
        assert outcome.status == "TIMEOUT"
        # ... and the status calls, bucketed by the sandbox minute they arrived in, never exceed what the
        # schedule allows in that minute (first wait poll_seconds, x1.5, at most 30 s)
        from tasks.build import poll_schedule

        polls = [c["time"] - start for c in calls(sandbox, "GetRepoBuildRecordStatus")]
        waits = poll_schedule(long.build.poll_seconds, 20 * 60)
        allowed_times = [0.0]
        for wait in waits:
            allowed_times.append(allowed_times[-1] + wait)
        minutes = 20
        for minute in range(minutes):
            made = sum(1 for t in polls if minute * 60 <= t < (minute + 1) * 60)
            allowed = sum(1 for t in allowed_times if minute * 60 <= t < (minute + 1) * 60)
            assert made <= allowed, (minute, made, allowed)
        assert sum(1 for t in polls if t < 60) <= 10  # fast at first: 1 s, 1.5 s, 2.25 s, ...
        assert all(sum(1 for t in polls if m * 60 <= t < (m + 1) * 60) <= 2 for m in range(2, minutes))
        assert len(polls) <= 10 + 2 * (minutes - 1)
        assert len(calls(sandbox, "CancelRepoBuildRecord")) == 1


class TestRunBuildCancelled:
    def test_a_stop_request_cancels_the_running_build(self, sandbox, world, spec, cr, bound):
        # given a build that hangs, and a stop requested after the third status poll
        world.cr.hang_repos.add("apps/billing-api")
        seen = Recorder()
        t = SandboxTime(world)
        # when
        outcome = run_build(
            cr,
            spec,
            bound,
            bound.rules[0],
            observer=seen,
            sleep=t.sleep,
            clock=t.clock,
            cancelled=lambda: sum(1 for e in seen.events if e[0] == "status") >= 3,
        )
        # then
        assert outcome.status == "CANCELED" and not outcome.succeeded
        assert outcome.notes == ["canceled: the flow run was cancelled"]
        assert outcome.changes[-1] == f"CancelRepoBuildRecord {outcome.build_record_id}"
        assert world.cr.status(world.cr.records[outcome.build_record_id]) == "CANCELED"
        assert seen.events[0] == ("started", outcome.build_record_id)
        assert seen.events[-1] == ("finished", "CANCELED")
        assert outcome.log_tail[-1].endswith("build canceled by user request")

    def test_a_successful_build_reads_its_digest(self, sandbox, world, spec, cr, bound):
        outcome, _, _ = follow(cr, spec, bound, world)
        record = world.cr.records[outcome.build_record_id]
        from acrvpc.sandbox.cr.builds import image_digest

        assert outcome.digest == f"sha256:{image_digest(record)}"
        assert len(calls(sandbox, "GetRepoTag")) == 1
        # the digest is the one the PUSH stage printed
        assert any(outcome.digest in line for line in outcome.log_tail)
