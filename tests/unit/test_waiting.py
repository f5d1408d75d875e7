"""The wait-until helper (acrvpc.cloud.waiting): backoff, deadline, timeout errors, cancellation."""

from __future__ import annotations

import pytest
from alibabacloud_ecs20140526 import models as ecs_models

from acrvpc.cloud.errors import PipelineError, error_code
from acrvpc.cloud.waiting import wait_until

MISSING_GROUP = "sg-bp1doesnotexist0001"


def group_named(ecs, spec, name: str):
    """One look: the VPC's security group of that name, or None."""
    body = ecs.describe_security_groups(
        ecs_models.DescribeSecurityGroupsRequest(
            region_id=spec.region, vpc_id=spec.network.vpc_id, security_group_name=name, max_results=100
        )
    ).body
    return next(iter(body.security_groups.security_group or []), None)


def describe_missing(ecs, spec):
    return ecs.describe_security_group_attribute(
        ecs_models.DescribeSecurityGroupAttributeRequest(region_id=spec.region, security_group_id=MISSING_GROUP)
    )


class TestWaitUntil:
    def test_a_wait_that_never_ends_times_out_naming_what_and_the_fix(self, ecs, spec, advance):
        # when waiting for a group nobody creates
        with pytest.raises(PipelineError) as raised:
            wait_until(
                lambda: group_named(ecs, spec, "never-made"),
                what="security group never-made to exist",
                timeout_s=20,
                sleep=advance,
                fix="create it, then rerun",
            )
        # then the error names what was awaited, how long, and the fix
        err = raised.value
        assert err.code == "WAIT_TIMEOUT"
        assert "security group never-made to exist" in str(err) and "after 20 s" in str(err)
        assert err.fix == "create it, then rerun"
        # and the pauses back off 0.5 s doubling to 5 s, the last one cut to the deadline
        assert advance.steps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 2.5]

    def test_the_default_fix_names_what_was_awaited(self, ecs, spec, advance):
        with pytest.raises(PipelineError) as raised:
            wait_until(
                lambda: group_named(ecs, spec, "never-made"), what="group never-made", timeout_s=1, sleep=advance
            )
        assert "group never-made" in raised.value.fix

    def test_the_wait_ends_when_the_state_is_reached(self, ecs, spec, advance):
        # given a group that appears after the third look
        looks = []

        def poll():
            looks.append(1)
            if len(looks) == 3:
                ecs.create_security_group(
                    ecs_models.CreateSecurityGroupRequest(
                        region_id=spec.region,
                        vpc_id=spec.network.vpc_id,
                        security_group_name="made-later",
                        tag=[ecs_models.CreateSecurityGroupRequestTag(key=k, value=v) for k, v in [spec.tag]],
                    )
                )
            return group_named(ecs, spec, "made-later")

        # when waiting for it
        found = wait_until(poll, what="made-later", timeout_s=60, sleep=advance)
        # then it is returned after two pauses
        assert found.security_group_name == "made-later"
        assert advance.steps == [0.5, 1.0]

    def test_bounds_are_the_callers(self, ecs, spec, advance):
        with pytest.raises(PipelineError):
            wait_until(lambda: None, what="x", timeout_s=12, sleep=advance, first_s=1.0, max_s=3.0)
        assert advance.steps == [1.0, 2.0, 3.0, 3.0, 3.0]

    def test_a_zero_timeout_looks_once(self, advance):
        looks = []
        with pytest.raises(PipelineError):
            wait_until(lambda: looks.append(1), what="x", timeout_s=0, sleep=advance)
        assert looks == [1] and advance.steps == []

    def test_a_named_error_means_not_yet_and_the_last_one_is_raised_at_the_deadline(self, ecs, spec, advance):
        def not_found(exc: Exception) -> bool:
            return error_code(exc) == "InvalidSecurityGroupId.NotFound"

        with pytest.raises(Exception) as raised:
            wait_until(lambda: describe_missing(ecs, spec), what="x", timeout_s=3, sleep=advance, retry_on=not_found)
        assert error_code(raised.value) == "InvalidSecurityGroupId.NotFound"
        assert advance.steps == [0.5, 1.0, 1.5]

    def test_any_other_error_ends_the_wait_at_once(self, ecs, spec, advance):
        with pytest.raises(Exception) as raised:
            wait_until(
                lambda: describe_missing(ecs, spec),
                what="x",
                timeout_s=30,
                sleep=advance,
                retry_on=lambda exc: error_code(exc) == "Throttling",
            )
        assert error_code(raised.value) == "InvalidSecurityGroupId.NotFound"
        assert advance.steps == []

    def test_timeout_error_is_the_callers(self, advance):
        with pytest.raises(PipelineError, match="still Attaching") as raised:
            wait_until(
                lambda: None,
                what="x",
                timeout_s=1,
                sleep=advance,
                timeout_error=lambda: PipelineError("ENI is still Attaching", code="ENI_ATTACH_TIMEOUT"),
            )
        assert raised.value.code == "ENI_ATTACH_TIMEOUT"

    def test_a_cancellation_during_a_pause_stops_the_wait(self, ecs, spec):
        # given a run cancelled while the wait pauses (Prefect raises a BaseException in the run)
        class Cancelled(BaseException):
            pass

        looks = []

        def cancelled_sleep(seconds: float) -> None:
            raise Cancelled()

        # when waiting, even with every Exception counted as "not yet"
        with pytest.raises(Cancelled):
            wait_until(
                lambda: looks.append(group_named(ecs, spec, "never-made")),
                what="x",
                timeout_s=300,
                sleep=cancelled_sleep,
                retry_on=lambda exc: True,
            )
        # then the wait ends at that pause
        assert len(looks) == 1

    def test_a_cancellation_inside_a_look_is_not_taken_for_not_yet(self, advance):
        def poll():
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            wait_until(poll, what="x", timeout_s=300, sleep=advance, retry_on=lambda exc: True)
        assert advance.steps == []
