"""Contract: stage build (tasks.build.run_build) against CR's documented answers.

Actions: CreateBuildRecordByRule, GetRepoBuildRecordStatus, ListRepoBuildRecordLog (string
``TotalCount``), GetRepoBuildRecord (int ms times), CancelRepoBuildRecord. Once the record exists,
a failing poll is retried in place by the client, missed while the build runs (a few in a row), and
then raised as ``BUILD_POLL_FAILED`` (never retried by
Prefect: that would start a second build).
"""

from __future__ import annotations

import itertools
import logging

import pytest

from acrvpc.cloud import callretry
from acrvpc.cloud.errors import CrBusinessError, PipelineError, error_code
from acrvpc.domain.outcomes import BindingOutcome, BoundRule
from tasks.build import BuildObserver, run_build
from tests.contract.support import case, cassette

RECORD = "0bf2a2c7-1bd0-4ba6-ae0c-8c4b3f9c****"
RULE = BoundRule(build_rule_id="crbr-ly77w5i3t31f****", push_type="GIT_BRANCH", push_name="main", image_tag="latest")
BINDING = BindingOutcome(
    namespace="apps",
    name="billing-api",
    repo_id="crr-gzsrlevmvoaq****",
    gitlab_project="platform/billing-api",
    rules=[RULE],
)


class _Time:
    """A clock that advances by ``step`` seconds per reading, and a sleep that records its calls."""

    def __init__(self, step: float = 1.0) -> None:
        self.ticks = itertools.count(0, step)
        self.slept: list[float] = []

    def clock(self) -> float:
        return float(next(self.ticks))

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class _Lines(BuildObserver, list):
    """An observer that keeps the log lines."""

    def log(self, line) -> None:
        self.append(line)


class TestRunBuild:
    @cassette("stages/build/success.yaml")
    def test_documented_build_is_followed_to_success(self, clients, contract_spec):
        # given BUILDING, the documented two log lines, then the documented lower-case "success"
        time = _Time()
        lines = _Lines()
        # when
        outcome = run_build(
            clients.cr, contract_spec, BINDING, RULE, observer=lines, sleep=time.sleep, clock=time.clock
        )
        # then
        assert outcome.status == "SUCCESS"
        assert outcome.build_record_id == RECORD
        assert outcome.image == "apps/billing-api:latest"
        assert outcome.seconds == 230.0  # EndTime - StartTime of GetRepoBuildRecord, int ms
        assert [(line.number, str(line)) for line in lines] == [
            (1, "GIT_CLONE fetch stage begin"),
            (2, "GIT_CLONE Cloning into '/workspace'..."),
        ]
        assert outcome.log_lines == 2
        assert outcome.changes == [f"CreateBuildRecordByRule {RECORD}"]
        assert outcome.digest == "sha256:6ed2d3f5bc5ffa9f0c4bd0a3c1e6a1f2d3b4c5d6e7f8091a2b3c4d5e6f708192"
        assert (outcome.push_type, outcome.ref) == ("GIT_BRANCH", "main")

    @cassette("stages/build/GetRepoTag.TAG_NOT_EXIST.yaml")
    def test_missing_tag_leaves_the_digest_empty(self, clients, contract_spec):
        # given a build that succeeds but whose tag GetRepoTag does not know
        time = _Time()
        # when
        outcome = run_build(clients.cr, contract_spec, BINDING, RULE, sleep=time.sleep, clock=time.clock)
        # then the build still succeeded, and the note says why there is no digest
        assert outcome.status == "SUCCESS" and outcome.digest == ""
        assert outcome.notes == ["image digest unavailable: TAG_NOT_EXIST (GetRepoTag)"]

    @cassette("stages/build/timeout.yaml")
    def test_build_past_its_timeout_is_canceled(self, clients, contract_spec):
        # given a build still BUILDING when the clock passes timeout_minutes
        time = _Time(step=contract_spec.build.timeout_minutes * 60)
        # when
        outcome = run_build(clients.cr, contract_spec, BINDING, RULE, sleep=time.sleep, clock=time.clock)
        # then
        assert outcome.status == "TIMEOUT"
        assert outcome.changes == [f"CreateBuildRecordByRule {RECORD}", f"CancelRepoBuildRecord {RECORD}"]

    @cassette("stages/build/CancelRepoBuildRecord.INSTANCE_STATUS_NOT_SUPPORT.yaml")
    def test_refused_cancel_rereads_the_status(self, clients, contract_spec):
        # given the cancel refused (IsSuccess=false) because the build has just ended
        time = _Time(step=contract_spec.build.timeout_minutes * 60)
        # when
        outcome = run_build(clients.cr, contract_spec, BINDING, RULE, sleep=time.sleep, clock=time.clock)
        # then
        assert outcome.status == "SUCCESS"
        assert outcome.changes == [f"CreateBuildRecordByRule {RECORD}"]

    @cassette("stages/build/GetRepoBuildRecord.Throttling.User.yaml")
    def test_throttled_poll_is_retried_in_place(self, clients, contract_spec, monkeypatch, caplog):
        # given GetRepoBuildRecord throttled once, and the client's in-place retries on
        time = _Time()
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        monkeypatch.setattr(callretry, "SLEEP", lambda seconds: None)
        caplog.set_level(logging.INFO, logger="acrvpc.cloud.callretry")
        # when
        outcome = run_build(clients.cr, contract_spec, BINDING, RULE, sleep=time.sleep, clock=time.clock)
        # then the client retried it once, in place (the poller itself sends each call once)
        assert outcome.status == "SUCCESS"
        assert [r.getMessage().split(",")[0] for r in caplog.records if "GetRepoBuildRecord:" in r.getMessage()] == [
            "cr GetRepoBuildRecord: Throttling.User"
        ]

    @cassette("stages/build/CreateBuildRecordByRule.REPO_NOT_EXIST.yaml")
    def test_refused_start_raises_cr_code(self, clients, contract_spec):
        # given CreateBuildRecordByRule answering IsSuccess=false
        # when
        with pytest.raises(CrBusinessError) as caught:
            run_build(clients.cr, contract_spec, BINDING, RULE, sleep=_Time().sleep, clock=_Time().clock)
        # then: nothing was started, so the error may escape to Prefect unchanged
        assert caught.value.code == "REPO_NOT_EXIST"

    @pytest.mark.parametrize(
        "cause, attempts",
        [
            case("stages/build/GetRepoBuildRecordStatus.Forbidden.RAM.yaml", "Forbidden.RAM", 1),
            case("stages/build/GetRepoBuildRecordStatus.Throttling.User.yaml", "Throttling.User", 5),
            case("stages/build/ListRepoBuildRecordLog.InvalidParameter.yaml", "InvalidParameter", 1),
        ],
    )
    def test_failing_poll_becomes_build_poll_failed(self, cause, attempts, clients, contract_spec):
        # given a poll answering an error once the record exists
        time = _Time()
        # when
        with pytest.raises(PipelineError) as caught:
            run_build(clients.cr, contract_spec, BINDING, RULE, sleep=time.sleep, clock=time.clock)
        # then
        assert caught.value.code == "BUILD_POLL_FAILED"
        assert not caught.value.retryable
        assert error_code(caught.value.__cause__) == cause
        assert len(time.slept) == attempts - 1
        assert RECORD in str(caught.value)
