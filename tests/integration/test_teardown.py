"""Teardown: the link's ENIs and security groups go, in dependency order, and nothing else does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m
from typer.testing import CliRunner

from acrvpc.cli.app import app
from acrvpc.cloud.errors import PipelineError, is_retryable
from acrvpc.domain.spec import TAG_KEY
from tasks.eni import ensure_network_interface
from tasks.link import ensure_security_group
from tasks.teardown import delete_network_interface, delete_security_group, find_link_resources, teardown_link
from tests.conftest import EXAMPLE_SPEC

BUILD_VSW = "vsw-bp1build000000001"


@pytest.fixture
def linked(ecs, spec, advance) -> dict[str, str]:
    """The link and ENI stages have run: a tagged group and a tagged ENI the registry has attached."""
    group = ensure_security_group(ecs, spec).security_group_id
    eni = ensure_network_interface(ecs, spec, group, sleep=advance)
    assert eni.status == "InUse"
    return {"group": group, "eni": eni.network_interface_id}


def since(sandbox) -> int:
    log = sandbox.world.calls.list()
    return log[-1]["seq"] if log else 0


def writes(sandbox, after: int) -> list[str]:
    return [c["action"] for c in sandbox.world.calls.list(after) if c["writes"]]


def untagged_group(ecs, spec, name: str = "someone-elses") -> str:
    return ecs.create_security_group(
        m.CreateSecurityGroupRequest(region_id=spec.region, vpc_id=spec.network.vpc_id, security_group_name=name)
    ).body.security_group_id


def eni_in(ecs, spec, group: str, tags: list[Any] | None = None) -> str:
    return ecs.create_network_interface(
        m.CreateNetworkInterfaceRequest(region_id=spec.region, v_switch_id=BUILD_VSW, security_group_id=group, tag=tags)
    ).body.network_interface_id


class TestFindLinkResources:
    def test_finds_the_link_group_and_eni(self, ecs, spec, linked):
        assert find_link_resources(ecs, spec) == {
            "network_interfaces": [linked["eni"]],
            "security_groups": [linked["group"]],
        }

    def test_ignores_untagged_and_other_links(self, ecs, spec, linked):
        # given: an untagged group and one tagged for another link, in the same VPC
        untagged_group(ecs, spec)
        ecs.create_security_group(
            m.CreateSecurityGroupRequest(
                region_id=spec.region,
                vpc_id=spec.network.vpc_id,
                tag=[m.CreateSecurityGroupRequestTag(key=TAG_KEY, value="other-link")],
            )
        )
        # when
        found = find_link_resources(ecs, spec)
        # then
        assert found["security_groups"] == [linked["group"]]


class TestTeardownLink:
    def test_leaves_no_tagged_resource_deleting_enis_first(self, sandbox, ecs, spec, linked, advance):
        # given
        start = since(sandbox)
        # when
        outcome = teardown_link(ecs, spec, sleep=advance)
        # then: permission, ENI, group, in that order; nothing tagged is left
        assert writes(sandbox, start) == [
            "DeleteNetworkInterfacePermission",
            "DeleteNetworkInterface",
            "DeleteSecurityGroup",
        ]
        assert find_link_resources(ecs, spec) == {"network_interfaces": [], "security_groups": []}
        assert linked["eni"] not in sandbox.world.ecs.enis and linked["group"] not in sandbox.world.ecs.groups
        assert outcome.stage == "teardown"
        assert outcome.resources == {"network_interfaces": linked["eni"], "security_groups": linked["group"]}
        assert [c.split()[0] for c in outcome.changes] == [
            "DeleteNetworkInterfacePermission",
            "DeleteNetworkInterface",
            "DeleteSecurityGroup",
        ]

    def test_waits_out_detaching_before_deleting_the_eni(self, sandbox, ecs, spec, linked, advance):
        # given: detaching takes 3 sandbox seconds
        sandbox.world.ecs.attach_seconds = 3
        start = since(sandbox)
        # when
        teardown_link(ecs, spec, sleep=advance)
        # then: it polled through Detaching, and the one delete found the ENI Available
        assert sum(advance.steps[-3:]) >= 3
        deletes = [c for c in sandbox.world.calls.list(start) if c["action"] == "DeleteNetworkInterface"]
        assert [(c["status"], c["code"]) for c in deletes] == [(200, "")]

    def test_rerun_is_a_no_op(self, sandbox, ecs, spec, linked, advance):
        # given
        teardown_link(ecs, spec, sleep=advance)
        start = since(sandbox)
        # when
        again = teardown_link(ecs, spec, sleep=advance)
        # then
        assert again.changes == [] and again.resources == {}
        assert writes(sandbox, start) == []

    def test_untagged_resources_are_untouched(self, sandbox, ecs, spec, linked, advance):
        # given: someone else's group and ENI in the same VPC and vSwitch
        group = untagged_group(ecs, spec)
        eni = eni_in(ecs, spec, group)
        # when
        teardown_link(ecs, spec, sleep=advance)
        # then
        assert group in sandbox.world.ecs.groups and eni in sandbox.world.ecs.enis

    def test_foreign_eni_in_the_link_group_fails_after_a_bounded_wait(self, sandbox, ecs, spec, linked, advance):
        # given: an untagged ENI someone put in the link's group
        foreign = eni_in(ecs, spec, linked["group"])
        before = len(advance.steps)
        # when
        with pytest.raises(PipelineError) as info:
            teardown_link(ecs, spec, timeout_s=10, sleep=advance)
        # then: the group stays, named with what uses it; the foreign ENI is untouched
        assert info.value.code == "DependencyViolation"
        assert foreign in str(info.value) and linked["group"] in str(info.value)
        # the link ENI's detach and Deleting waits (backoff from 0.5 s: at most twice each phase), then 10 s of
        # retries on the group (the last wait may pass the deadline by one step, at most 4 s)
        ecs_world = sandbox.world.ecs
        assert 10 <= sum(advance.steps[before:]) <= 10 + 4 + 2 * (ecs_world.attach_seconds + ecs_world.delete_seconds)
        assert foreign in sandbox.world.ecs.enis and linked["group"] in sandbox.world.ecs.groups


class TestDeleteNetworkInterface:
    def test_an_id_already_gone_is_done(self, sandbox, ecs, spec, advance):
        # given
        start = since(sandbox)
        # when
        changes = delete_network_interface(ecs, spec, "eni-bp1gone00000000000", sleep=advance)
        # then
        assert changes == [] and writes(sandbox, start) == []

    def test_a_partly_created_eni_without_permission_is_deleted(self, sandbox, ecs, spec, advance):
        # given: created and tagged, never granted (a run that failed in between)
        group = ensure_security_group(ecs, spec).security_group_id
        eni = eni_in(ecs, spec, group, [m.CreateNetworkInterfaceRequestTag(key=TAG_KEY, value=spec.name)])
        # when
        changes = delete_network_interface(ecs, spec, eni, sleep=advance)
        # then
        assert changes == [f"DeleteNetworkInterface {eni}"]
        # it waited out Deleting (1 sandbox second) until the ENI was not found any more
        assert eni not in sandbox.world.ecs.enis
        assert sandbox.world.ecs.delete_seconds <= sum(advance.steps) <= sandbox.world.ecs.delete_seconds + 2

    def test_an_untagged_eni_is_refused(self, sandbox, ecs, spec, advance):
        # given
        eni = eni_in(ecs, spec, untagged_group(ecs, spec))
        # when
        with pytest.raises(PipelineError) as info:
            delete_network_interface(ecs, spec, eni, sleep=advance)
        # then
        assert info.value.code == "TEARDOWN_NOT_TAGGED"
        assert eni in sandbox.world.ecs.enis

    def test_a_transient_failure_midway_is_retryable_and_a_retry_finishes(self, sandbox, ecs, spec, linked, advance):
        # given: the delete is refused once with a 503, after the permission went
        sandbox.world.faults.fail_next("DeleteNetworkInterface", 1, "ServiceUnavailable")
        # when
        with pytest.raises(Exception) as info:
            delete_network_interface(ecs, spec, linked["eni"], sleep=advance)
        changes = delete_network_interface(ecs, spec, linked["eni"], sleep=advance)
        # then
        assert is_retryable(info.value)
        assert changes == [f"DeleteNetworkInterface {linked['eni']}"]
        assert linked["eni"] not in sandbox.world.ecs.enis

    def test_an_eni_that_stays_detaching_times_out(self, sandbox, ecs, spec, linked):
        # given: sandbox time does not move while the function "sleeps"
        sandbox.world.ecs.attach_seconds = 600
        # when
        with pytest.raises(PipelineError) as info:
            delete_network_interface(ecs, spec, linked["eni"], timeout_s=2, sleep=lambda s: None)
        # then
        assert info.value.code == "ENI_DELETE_TIMEOUT" and "Detaching" in str(info.value)
        assert linked["eni"] in sandbox.world.ecs.enis


class TestDeleteSecurityGroup:
    def test_an_id_already_gone_is_done(self, sandbox, ecs, spec, advance):
        start = since(sandbox)
        assert delete_security_group(ecs, spec, "sg-bp1gone000000000000", sleep=advance) == []
        assert writes(sandbox, start) == []

    def test_an_untagged_group_is_refused(self, sandbox, ecs, spec, advance):
        group = untagged_group(ecs, spec)
        with pytest.raises(PipelineError) as info:
            delete_security_group(ecs, spec, group, sleep=advance)
        assert info.value.code == "TEARDOWN_NOT_TAGGED"
        assert group in sandbox.world.ecs.groups

    def test_dependency_violation_is_retried_until_the_user_is_gone(self, sandbox, ecs, spec):
        # given: a tagged ENI still in the group, gone during the first wait
        group = ensure_security_group(ecs, spec).security_group_id
        eni = eni_in(ecs, spec, group)
        start = since(sandbox)

        def sleep(seconds: float) -> None:
            with sandbox.world.lock:
                if eni in sandbox.world.ecs.enis and sandbox.world.ecs.enis[eni].phase is None:
                    sandbox.world.ecs.delete_network_interface(spec.region, eni)
                sandbox.world.clock.advance(seconds)  # Deleting ends during the wait

        # when
        changes = delete_security_group(ecs, spec, group, sleep=sleep)
        # then
        assert changes == [f"DeleteSecurityGroup {group}"]
        codes = [c["code"] for c in sandbox.world.calls.list(start) if c["action"] == "DeleteSecurityGroup"]
        # refused while the ENI is there and while it is Deleting, then deleted
        assert len(codes) >= 2 and codes[-1] == "" and set(codes[:-1]) == {"DependencyViolation"}


@pytest.mark.e2e
class TestTeardownFlow:
    def test_flow_returns_what_it_deleted(self, prefect_harness, sandbox, ecs, spec, linked):
        from flows.teardown import teardown

        # given: detaching is over in a blink (the task sleeps for real)
        sandbox.world.ecs.attach_seconds = 0.05
        # when
        result = teardown(spec_path=str(EXAMPLE_SPEC))
        # then
        assert result["stage"] == "teardown"
        assert result["resources"] == {"network_interfaces": linked["eni"], "security_groups": linked["group"]}
        assert find_link_resources(ecs, spec) == {"network_interfaces": [], "security_groups": []}


class TestTeardownCommand:
    def test_refuses_without_yes_when_stdin_is_not_a_terminal(self, sandbox, ecs, spec, linked):
        # when
        result = CliRunner().invoke(app, ["teardown", str(EXAMPLE_SPEC)])
        # then: exit 2, the listing shown, nothing deleted
        assert result.exit_code == 2
        assert "--yes" in result.output and linked["eni"] in result.output
        assert linked["eni"] in sandbox.world.ecs.enis and linked["group"] in sandbox.world.ecs.groups

    def test_yes_deletes_and_reports_json(self, sandbox, ecs, spec, linked):
        # given: detaching is over in a blink
        sandbox.world.ecs.attach_seconds = 0.05
        # when
        result = CliRunner().invoke(app, ["teardown", str(EXAMPLE_SPEC), "--yes", "--json"])
        # then
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["ok"] and report["resources"]["security_groups"] == linked["group"]
        assert find_link_resources(ecs, spec) == {"network_interfaces": [], "security_groups": []}

    def test_nothing_to_delete_needs_no_confirmation(self, sandbox):
        # when
        result = CliRunner().invoke(app, ["teardown", str(EXAMPLE_SPEC)])
        # then
        assert result.exit_code == 0 and "nothing to delete" in result.output
