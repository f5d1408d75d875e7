"""Deterministic ClientTokens when ECS remembers a token longer than its resource.

The security group and ENI creates carry deterministic ClientTokens (a create repeated in place
makes one resource). With the sandbox's ``ecs.remember_deleted_tokens`` switch on, a create that
repeats the token of a deleted resource is answered with that resource's id, as an ECS keeping
tokens longer would. The pipeline must notice the answer is gone (or ``Deleting``), create again
with a new token, and never use the stale id.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud import clients as cloud
from acrvpc.domain.spec import TAG_KEY
from acrvpc.sandbox.world import load_scenario
from flows.teardown import teardown as teardown_flow
from flows.vpc_build import vpc_build
from tasks.ecs_common import client_token
from tasks.eni import ensure_network_interface
from tasks.link import ensure_security_group
from tasks.teardown import delete_network_interface, revoke_permissions, teardown_link
from tests.conftest import EXAMPLE_SPEC

REGION = "cn-hangzhou"
SANDBOX_VPC = "vpc-bp1sandbox00000001"
BUILD_VSW = "vsw-bp1build000000001"


def remembering(sandbox, on: bool = True) -> Any:
    """Re-seed the sandbox's default world with ``ecs.remember_deleted_tokens`` set."""
    scenario = load_scenario()
    scenario.setdefault("ecs", {})["remember_deleted_tokens"] = on
    sandbox.world.reset(scenario)
    return sandbox.world


@pytest.fixture
def world(sandbox):
    return remembering(sandbox)


def link_groups(world, spec) -> list[str]:
    return sorted(g for g, sg in world.ecs.groups.items() if sg.tags.get(TAG_KEY) == spec.name)


def link_enis(world, spec) -> dict[str, Any]:
    return {e: n for e, n in world.ecs.enis.items() if n.tags.get(TAG_KEY) == spec.name}


def converge(ecs, spec, advance) -> tuple[str, str]:
    group = ensure_security_group(ecs, spec).security_group_id
    eni = ensure_network_interface(ecs, spec, group, sleep=advance)
    assert eni.status == "InUse"
    return group, eni.network_interface_id


def creates(world, action: str, since: int = 0) -> list[dict[str, Any]]:
    return [c for c in world.calls.list(since) if c["action"] == action]


def last_seq(world) -> int:
    calls = world.calls.list()
    return calls[-1]["seq"] if calls else 0


def touching(world, resource_id: str, since: int) -> list[str]:
    """The calls since ``since`` whose parameters name ``resource_id``."""
    return [
        c["action"]
        for c in world.calls.list(since)
        if any(resource_id in str(v) for v in (c.get("params") or {}).values())
    ]


class TestTheSandboxSwitch:
    def _create(self, ecs, token: str) -> str:
        return ecs.create_security_group(
            m.CreateSecurityGroupRequest(
                region_id=REGION, vpc_id=SANDBOX_VPC, security_group_name="t", client_token=token
            )
        ).body.security_group_id

    @pytest.mark.parametrize("on", [False, True])
    def test_a_deleted_groups_token_is_forgotten_or_remembered(self, sandbox, spec, on):
        world = remembering(sandbox, on)
        ecs = cloud.cloud_clients(spec).ecs
        first = self._create(ecs, "tok-1")
        ecs.delete_security_group(m.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=first))
        again = self._create(ecs, "tok-1")
        assert (again == first) is on
        assert (again in world.ecs.groups) is not on

    def test_a_deleted_enis_token_answers_the_eni_as_created(self, world, ecs, spec, advance):
        group = ensure_security_group(ecs, spec).security_group_id
        request = m.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=BUILD_VSW, security_group_id=group, client_token="tok-eni"
        )
        first = ecs.create_network_interface(request).body
        ecs.delete_network_interface(
            m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=first.network_interface_id)
        )
        assert ecs.create_network_interface(request).body.status == "Deleting"  # still there: that ENI, Deleting
        advance(5)
        again = ecs.create_network_interface(request).body
        assert (again.network_interface_id, again.status) == (first.network_interface_id, "Available")
        assert first.network_interface_id not in world.ecs.enis  # answered, but gone


class TestConvergeTeardownConverge:
    def test_the_second_converge_ends_with_a_live_group_and_eni(self, world, ecs, spec, advance):
        old_group, old_eni = converge(ecs, spec, advance)
        teardown_link(ecs, spec, sleep=advance)
        assert link_groups(world, spec) == [] and link_enis(world, spec) == {}
        seq = last_seq(world)
        group, eni = converge(ecs, spec, advance)
        # the first create was answered with the deleted group; a second one, with another token, made a live one
        tokens = [c["params"]["ClientToken"] for c in creates(world, "CreateSecurityGroup", seq)]
        assert len(tokens) == 2 and tokens[0] == client_token("sg", spec.name, spec.network.vpc_id) != tokens[1]
        assert group != old_group and link_groups(world, spec) == [group]
        assert world.ecs.groups[group].inner_access_policy == "Drop" and world.ecs.groups[group].rules
        # the ENI (its token names the new group) is live, attached, in the new group
        assert eni != old_eni and list(link_enis(world, spec)) == [eni]
        assert world.ecs.enis[eni].security_group_ids == [group] and world.ecs.status(world.ecs.enis[eni]) == "InUse"
        # and nothing was asked of the stale ids after the answer that named them
        assert touching(world, old_group, seq) == ["DescribeSecurityGroups"]
        assert touching(world, old_eni, seq) == []

    def test_an_eni_deleted_on_its_own_is_created_again(self, world, ecs, spec, advance):
        group, old_eni = converge(ecs, spec, advance)
        delete_network_interface(ecs, spec, old_eni, sleep=advance)
        seq = last_seq(world)
        again_group, eni = converge(ecs, spec, advance)
        assert again_group == group and eni != old_eni
        assert len(creates(world, "CreateNetworkInterface", seq)) == 2
        assert list(link_enis(world, spec)) == [eni] and world.ecs.status(world.ecs.enis[eni]) == "InUse"
        assert touching(world, old_eni, seq) == ["DescribeNetworkInterfaces"]

    def test_an_answer_that_is_still_deleting_is_not_used(self, world, ecs, spec, advance):
        group, old_eni = converge(ecs, spec, advance)
        revoke_permissions(ecs, spec, old_eni)  # the registry detaches it: Available again
        advance(5)
        ecs.delete_network_interface(m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=old_eni))
        world.ecs.enis[old_eni].tags = {}  # the tag index lags: the stage's lookup misses the Deleting ENI
        seq = last_seq(world)
        out = ensure_network_interface(ecs, spec, group, sleep=advance)
        assert out.network_interface_id != old_eni and out.status == "InUse"
        assert touching(world, old_eni, seq) == ["DescribeNetworkInterfaces"]

    def test_the_replacement_create_is_idempotent(self, world, ecs, spec, advance):
        old_group, _ = converge(ecs, spec, advance)
        teardown_link(ecs, spec, sleep=advance)
        group = ensure_security_group(ecs, spec).security_group_id
        world.ecs.groups[group].tags = {}  # a lookup that misses it (eventual consistency): the stage creates again
        seq = last_seq(world)
        again = ensure_security_group(ecs, spec).security_group_id
        # the same two tokens, in the same order: ECS answers the group the replacement token made
        assert again == group != old_group
        assert [g for g, sg in world.ecs.groups.items() if sg.name == spec.resource_name] == [group]
        assert [c["status"] for c in creates(world, "CreateSecurityGroup", seq)] == [200, 200]


@pytest.mark.usefixtures("prefect_harness")
class TestTheFlows:
    def test_vpc_build_teardown_vpc_build(self, world, spec):
        world.clock.set_scale(200.0)
        first = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        assert first.is_completed(), first.message
        [old_group] = link_groups(world, spec)
        teardown_flow(spec_path=str(EXAMPLE_SPEC))
        assert link_groups(world, spec) == [] and link_enis(world, spec) == {}
        seq = last_seq(world)
        second = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        assert second.is_completed(), second.message
        [group] = link_groups(world, spec)
        [eni] = link_enis(world, spec).values()
        assert group != old_group and eni.security_group_ids == [group]
        assert world.ecs.status(eni) == "InUse"
        assert len(creates(world, "CreateSecurityGroup", seq)) == 2
        assert touching(world, old_group, seq) == ["DescribeSecurityGroups"]
