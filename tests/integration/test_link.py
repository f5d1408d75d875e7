"""Stage "link": the managed security group, converged against the sandbox with the real ECS client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud.errors import PipelineError, is_retryable
from acrvpc.domain.outcomes import LinkOutcome
from acrvpc.domain.spec import TAG_KEY, parse_spec
from tasks.link import desired_egress, ensure_security_group, link

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "examples" / "sandbox.yaml"
REGION = "cn-hangzhou"
VPC_ID = "vpc-bp1sandbox00000001"
DESIRED = {
    ("egress", "Accept", 1, "TCP", "80/80", "192.168.1.20/32"),
    ("egress", "Accept", 1, "TCP", "8081/8081", "192.168.1.30/32"),
    ("egress", "Drop", 100, "ALL", "-1/-1", "0.0.0.0/0"),
}


def spec_with(**changes: Any):
    """The example spec with some sections changed (``gitlab={"port": 443}``)."""
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    for section, values in changes.items():
        data[section].update(values)
    return parse_spec(data)


def calls(sandbox, since: int = 0) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", params={"since": since}, timeout=5).json()["calls"]


def writes(sandbox, since: int = 0) -> list[str]:
    return [c["action"] for c in calls(sandbox, since) if c["writes"]]


def last_seq(sandbox) -> int:
    log = calls(sandbox)
    return log[-1]["seq"] if log else 0


def rule_set(sandbox, group_id: str) -> set[tuple[Any, ...]]:
    group = sandbox.world.ecs.groups[group_id]
    return {(r.direction, r.policy, r.priority, r.ip_protocol, r.port_range, r.cidr) for r in group.rules}


def tagged_group(ecs, name: str) -> str:
    return ecs.create_security_group(
        m.CreateSecurityGroupRequest(
            region_id=REGION, vpc_id=VPC_ID, tag=[m.CreateSecurityGroupRequestTag(key=TAG_KEY, value=name)]
        )
    ).body.security_group_id


class TestDesiredEgress:
    def test_gitlab_then_allowed_targets_then_drop_all(self, spec):
        rules = desired_egress(spec)
        assert [(r.policy, r.priority, r.ip_protocol, r.port_range, r.cidr) for r in rules] == [
            ("Accept", 1, "TCP", "80/80", "192.168.1.20/32"),
            ("Accept", 1, "TCP", "8081/8081", "192.168.1.30/32"),
            ("Drop", 100, "ALL", "-1/-1", "0.0.0.0/0"),
        ]

    def test_an_allowed_target_equal_to_gitlab_is_not_doubled(self):
        rules = desired_egress(spec_with(link={"allowed_ips": ["192.168.1.20:80"]}))
        assert len(rules) == 2


class TestEnsureSecurityGroup:
    def test_first_run_creates_a_tagged_group_converged_to_the_spec(self, sandbox, ecs, spec):
        out = ensure_security_group(ecs, spec)
        group = sandbox.world.ecs.groups[out.security_group_id]
        assert out.changes[0] == f"CreateSecurityGroup {out.security_group_id}"
        assert (group.name, group.vpc_id, group.group_type) == ("acr-vpc-build-demo-build", VPC_ID, "normal")
        assert group.tags == {TAG_KEY: "demo-build"}
        assert group.inner_access_policy == "Drop"
        assert rule_set(sandbox, out.security_group_id) == DESIRED
        assert out.resources == {"security_group": out.security_group_id}
        assert writes(sandbox) == ["CreateSecurityGroup", "ModifySecurityGroupPolicy", "AuthorizeSecurityGroupEgress"]

    def test_second_run_makes_zero_writes(self, sandbox, ecs, spec):
        first = ensure_security_group(ecs, spec)
        since = last_seq(sandbox)
        again = ensure_security_group(ecs, spec)
        assert again.security_group_id == first.security_group_id
        assert again.changes == []
        assert writes(sandbox, since) == []
        assert [c["action"] for c in calls(sandbox, since)] == [
            "DescribeSecurityGroups",
            "DescribeSecurityGroupAttribute",
        ]

    def test_extra_egress_rule_is_revoked(self, sandbox, ecs, spec):
        gid = ensure_security_group(ecs, spec).security_group_id
        ecs.authorize_security_group_egress(
            m.AuthorizeSecurityGroupEgressRequest(
                region_id=REGION,
                security_group_id=gid,
                permissions=[
                    m.AuthorizeSecurityGroupEgressRequestPermissions(
                        ip_protocol="TCP", port_range="443/443", dest_cidr_ip="0.0.0.0/0"
                    )
                ],
            )
        )
        out = ensure_security_group(ecs, spec)
        assert [c.split()[0] for c in out.changes] == ["RevokeSecurityGroupEgress"]
        assert rule_set(sandbox, gid) == DESIRED

    def test_inbound_accept_rule_is_revoked(self, sandbox, ecs, spec):
        gid = ensure_security_group(ecs, spec).security_group_id
        sandbox.world.ecs.authorize(
            REGION, gid, "ingress", [{"IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}]
        )
        out = ensure_security_group(ecs, spec)
        assert [c.split()[0] for c in out.changes] == ["RevokeSecurityGroup"]
        assert rule_set(sandbox, gid) == DESIRED

    def test_inner_access_policy_is_set_back_to_drop(self, sandbox, ecs, spec):
        gid = ensure_security_group(ecs, spec).security_group_id
        sandbox.world.ecs.groups[gid].inner_access_policy = "Accept"
        since = last_seq(sandbox)
        ensure_security_group(ecs, spec)
        assert writes(sandbox, since) == ["ModifySecurityGroupPolicy"]
        assert sandbox.world.ecs.groups[gid].inner_access_policy == "Drop"

    def test_a_missing_drop_rule_is_added_back_in_one_call(self, sandbox, ecs, spec):
        gid = ensure_security_group(ecs, spec).security_group_id
        group = sandbox.world.ecs.groups[gid]
        group.rules = [r for r in group.rules if r.policy != "Drop"]
        since = last_seq(sandbox)
        ensure_security_group(ecs, spec)
        assert writes(sandbox, since) == ["AuthorizeSecurityGroupEgress"]
        assert rule_set(sandbox, gid) == DESIRED

    def test_a_changed_gitlab_port_adds_the_new_rule_before_revoking_the_old(self, sandbox, ecs, spec):
        gid = ensure_security_group(ecs, spec).security_group_id
        since = last_seq(sandbox)
        out = ensure_security_group(ecs, spec_with(gitlab={"port": 443}))
        assert writes(sandbox, since) == ["AuthorizeSecurityGroupEgress", "RevokeSecurityGroupEgress"]
        assert ("egress", "Accept", 1, "TCP", "443/443", "192.168.1.20/32") in rule_set(sandbox, gid)
        assert ("egress", "Accept", 1, "TCP", "80/80", "192.168.1.20/32") not in rule_set(sandbox, gid)
        assert len(out.changes) == 2

    def test_a_group_found_by_tag_is_reused_not_recreated(self, sandbox, ecs, spec):
        gid = tagged_group(ecs, spec.name)
        out = ensure_security_group(ecs, spec)
        assert out.security_group_id == gid
        assert "CreateSecurityGroup" not in " ".join(out.changes)

    def test_two_tagged_groups_are_ambiguous(self, sandbox, ecs, spec):
        a, b = tagged_group(ecs, spec.name), tagged_group(ecs, spec.name)
        since = last_seq(sandbox)
        with pytest.raises(PipelineError) as exc:
            ensure_security_group(ecs, spec)
        assert exc.value.code == "LINK_AMBIGUOUS"
        assert a in str(exc.value) and b in str(exc.value) and exc.value.fix
        assert writes(sandbox, since) == []

    def test_a_group_of_another_link_is_ignored(self, sandbox, ecs, spec):
        other = tagged_group(ecs, "other-link")
        out = ensure_security_group(ecs, spec)
        assert out.security_group_id != other
        assert sandbox.world.ecs.groups[other].rules == []

    def test_unknown_vpc_fails_with_the_provider_code_and_a_fix(self, sandbox, ecs):
        with pytest.raises(PipelineError) as exc:
            ensure_security_group(ecs, spec_with(network={"vpc_id": "vpc-bp1nope"}))
        assert exc.value.code == "InvalidVpcId.NotFound"
        assert "vpc-bp1nope" in str(exc.value) and exc.value.fix

    def test_a_transient_error_is_left_for_the_task_retry(self, sandbox, ecs, spec):
        requests.post(
            f"{sandbox.url}/_sandbox/faults",
            json={"action": "CreateSecurityGroup", "count": 1, "code": "ServiceUnavailable"},
            timeout=5,
        )
        with pytest.raises(Exception) as exc:
            ensure_security_group(ecs, spec)
        assert not isinstance(exc.value, PipelineError) and is_retryable(exc.value)
        assert ensure_security_group(ecs, spec).changes  # the retry converges


class TestLinkTask:
    def test_builds_its_client_from_the_spec(self, sandbox, spec):
        out = link.fn(spec)
        assert isinstance(out, LinkOutcome) and out.security_group_id in sandbox.world.ecs.groups
