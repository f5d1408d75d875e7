"""The sandbox's ECS 2014-05-26 emulation, over HTTP with the real SDK client."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud import clients as cloud
from tests import sdk_shapes

REGION = "cn-hangzhou"
VPC_ID = "vpc-bp1sandbox00000001"
BUILD_VSW = "vsw-bp1build000000001"
GITLAB_SG = "sg-bp1gitlab00000001"
GITLAB_IP = "192.168.1.20"
BUILD_ACCOUNT = 1654218965343050
OTHER_VPC = "vpc-bp1other000000001"


@pytest.fixture
def ecs(sandbox):
    return cloud.ecs_client(REGION, cloud.resolve_access_key(None))


def raw_call(client: Any, action: str, query: dict[str, Any]) -> dict[str, Any]:
    return sdk_shapes.raw_call(client, action, query, "2014-05-26")


assert_sdk_keeps_every_key = sdk_shapes.assert_sdk_keeps_every_key


def code_of(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.code


def new_group(ecs, vpc_id: str = VPC_ID, **kw: Any) -> str:
    return ecs.create_security_group(
        m.CreateSecurityGroupRequest(region_id=REGION, vpc_id=vpc_id, **kw)
    ).body.security_group_id


def egress(ecs, group_id: str, **perm: Any) -> None:
    ecs.authorize_security_group_egress(
        m.AuthorizeSecurityGroupEgressRequest(
            region_id=REGION,
            security_group_id=group_id,
            permissions=[m.AuthorizeSecurityGroupEgressRequestPermissions(**perm)],
        )
    )


def rules(ecs, group_id: str, direction: str = "all") -> list[Any]:
    body = ecs.describe_security_group_attribute(
        m.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id=group_id, direction=direction)
    ).body
    return body.permissions.permission


def new_eni(ecs, group_id: str, **kw: Any) -> Any:
    return ecs.create_network_interface(
        m.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=kw.pop("v_switch_id", BUILD_VSW), security_group_id=group_id, **kw
        )
    ).body


def eni_status(ecs, eni_id: str) -> str:
    body = ecs.describe_network_interfaces(
        m.DescribeNetworkInterfacesRequest(region_id=REGION, network_interface_id=[eni_id])
    ).body
    return body.network_interface_sets.network_interface_set[0].status


def grant(ecs, eni_id: str, account: int = BUILD_ACCOUNT) -> Any:
    return ecs.create_network_interface_permission(
        m.CreateNetworkInterfacePermissionRequest(
            region_id=REGION, network_interface_id=eni_id, account_id=account, permission="InstanceAttach"
        )
    ).body


class TestDescribeInstances:
    def test_finds_the_gitlab_instance_by_private_ip_json_array(self, ecs):
        body = ecs.describe_instances(
            m.DescribeInstancesRequest(region_id=REGION, private_ip_addresses=f'["{GITLAB_IP}"]')
        ).body
        (inst,) = body.instances.instance
        assert inst.instance_id == "i-bp1gitlab000000001"
        assert inst.vpc_attributes.private_ip_address.ip_address == [GITLAB_IP]
        assert inst.security_group_ids.security_group_id == [GITLAB_SG]
        assert inst.network_interfaces.network_interface[0].type == "Primary"
        assert body.total_count == 1

    def test_every_key_is_known_to_the_sdk_model(self, ecs):
        raw = raw_call(ecs, "DescribeInstances", {"RegionId": REGION})
        assert isinstance(raw["TotalCount"], int)
        assert_sdk_keeps_every_key(raw, m.DescribeInstancesResponseBody)

    def test_filters_by_instance_ids_and_status(self, ecs):
        body = ecs.describe_instances(
            m.DescribeInstancesRequest(
                region_id=REGION, instance_ids='["i-bp1maven0000000001", "i-nope"]', status="Running"
            )
        ).body
        assert [i.instance_id for i in body.instances.instance] == ["i-bp1maven0000000001"]
        body = ecs.describe_instances(m.DescribeInstancesRequest(region_id=REGION, status="Stopped")).body
        assert body.instances.instance == [] and body.total_count == 0

    def test_pages_with_max_results_and_next_token(self, ecs):
        first = ecs.describe_instances(m.DescribeInstancesRequest(region_id=REGION, max_results=1)).body
        second = ecs.describe_instances(
            m.DescribeInstancesRequest(region_id=REGION, max_results=1, next_token=first.next_token)
        ).body
        assert first.next_token and not second.next_token
        ids = {first.instances.instance[0].instance_id, second.instances.instance[0].instance_id}
        assert ids == {"i-bp1gitlab000000001", "i-bp1maven0000000001"}

    def test_another_region_sees_nothing(self, ecs):
        body = ecs.describe_instances(m.DescribeInstancesRequest(region_id="cn-beijing")).body
        assert body.instances.instance == []

    def test_instance_ids_must_be_a_json_array(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.describe_instances(m.DescribeInstancesRequest(region_id=REGION, instance_ids="i-1,i-2"))
        assert code_of(exc) == "InvalidParameter"


class TestDescribeSecurityGroups:
    def test_finds_groups_by_tag_with_wrapped_tags(self, ecs):
        gid = new_group(ecs, tag=[m.CreateSecurityGroupRequestTag(key="acr-vpc-build:link", value="x")])
        new_group(ecs, tag=[m.CreateSecurityGroupRequestTag(key="acr-vpc-build:link", value="y")])
        body = ecs.describe_security_groups(
            m.DescribeSecurityGroupsRequest(
                region_id=REGION,
                vpc_id=VPC_ID,
                tag=[m.DescribeSecurityGroupsRequestTag(key="acr-vpc-build:link", value="x")],
            )
        ).body
        (group,) = body.security_groups.security_group
        assert group.security_group_id == gid
        assert [(t.tag_key, t.tag_value) for t in group.tags.tag] == [("acr-vpc-build:link", "x")]
        assert body.total_count == 1

    def test_every_key_is_known_to_the_sdk_model_and_total_count_is_an_int(self, ecs):
        raw = raw_call(ecs, "DescribeSecurityGroups", {"RegionId": REGION, "IsQueryEcsCount": "True"})
        assert isinstance(raw["TotalCount"], int)
        assert raw["SecurityGroups"]["SecurityGroup"][0]["EcsCount"] == 2
        assert_sdk_keeps_every_key(raw, m.DescribeSecurityGroupsResponseBody)

    def test_filters_by_json_array_of_ids_and_service_managed(self, ecs):
        gid = new_group(ecs)
        body = ecs.describe_security_groups(
            m.DescribeSecurityGroupsRequest(region_id=REGION, security_group_ids=f'["{gid}"]')
        ).body
        assert [g.security_group_id for g in body.security_groups.security_group] == [gid]
        body = ecs.describe_security_groups(
            m.DescribeSecurityGroupsRequest(region_id=REGION, service_managed=True)
        ).body
        assert body.security_groups.security_group == []

    def test_pages_with_page_number_and_page_size(self, ecs):
        for _ in range(2):
            new_group(ecs)
        body = ecs.describe_security_groups(
            m.DescribeSecurityGroupsRequest(region_id=REGION, page_number=2, page_size=2)
        ).body
        assert (body.total_count, body.page_number, len(body.security_groups.security_group)) == (3, 2, 1)


class TestDescribeSecurityGroupAttribute:
    def test_rules_carry_string_priority_and_reported_policy(self, ecs):
        raw = raw_call(ecs, "DescribeSecurityGroupAttribute", {"RegionId": REGION, "SecurityGroupId": GITLAB_SG})
        first = raw["Permissions"]["Permission"][0]
        assert (first["Priority"], first["Policy"], first["SourceCidrIp"]) == ("1", "Accept", "100.104.0.0/16")
        assert first["SecurityGroupRuleId"].startswith("sgr-")
        assert_sdk_keeps_every_key(raw, m.DescribeSecurityGroupAttributeResponseBody)

    def test_direction_filters_the_rules(self, ecs):
        assert len(rules(ecs, GITLAB_SG, "ingress")) == 2
        assert rules(ecs, GITLAB_SG, "egress") == []

    def test_unknown_group_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            rules(ecs, "sg-nope")
        assert code_of(exc) == "InvalidSecurityGroupId.NotFound" and exc.value.status_code == 404


class TestCreateSecurityGroup:
    def test_creates_a_normal_group_in_the_vpc(self, ecs):
        gid = new_group(ecs, security_group_name="build", description="d")
        body = ecs.describe_security_group_attribute(
            m.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id=gid)
        ).body
        assert (body.vpc_id, body.security_group_name, body.inner_access_policy) == (VPC_ID, "build", "Accept")

    def test_enterprise_group_isolates_members(self, ecs):
        gid = new_group(ecs, security_group_type="enterprise")
        body = ecs.describe_security_group_attribute(
            m.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id=gid)
        ).body
        assert body.inner_access_policy == "Drop"

    def test_same_client_token_and_params_return_the_same_group(self, ecs):
        first = new_group(ecs, security_group_name="a", client_token="tok-1")
        again = new_group(ecs, security_group_name="a", client_token="tok-1")
        assert first == again

    def test_same_client_token_with_other_params_is_refused(self, ecs):
        new_group(ecs, security_group_name="a", client_token="tok-2")
        with pytest.raises(Exception) as exc:
            new_group(ecs, security_group_name="b", client_token="tok-2")
        assert code_of(exc) == "IdempotentParameterMismatch"

    def test_unknown_vpc_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            new_group(ecs, vpc_id="vpc-nope")
        assert code_of(exc) == "InvalidVpcId.NotFound" and exc.value.status_code == 404

    def test_bad_type_is_refused(self, ecs):
        with pytest.raises(Exception) as exc:
            new_group(ecs, security_group_type="premium")
        assert code_of(exc) == "InvalidSecurityGroupType.NotSupported"


class TestModifySecurityGroupPolicy:
    def test_sets_inner_access_policy_case_insensitively(self, ecs):
        gid = new_group(ecs)
        ecs.modify_security_group_policy(
            m.ModifySecurityGroupPolicyRequest(region_id=REGION, security_group_id=gid, inner_access_policy="drop")
        )
        body = ecs.describe_security_group_attribute(
            m.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id=gid)
        ).body
        assert body.inner_access_policy == "Drop"

    def test_bad_policy_is_refused(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.modify_security_group_policy(
                m.ModifySecurityGroupPolicyRequest(
                    region_id=REGION, security_group_id=GITLAB_SG, inner_access_policy="Maybe"
                )
            )
        assert code_of(exc) == "InvalidInnerAccessPolicy.Malformed"


class TestAuthorizeSecurityGroupEgress:
    def test_stores_a_normalized_rule_with_an_id(self, ecs):
        gid = new_group(ecs)
        egress(
            ecs,
            gid,
            ip_protocol="tcp",
            port_range="80/80",
            dest_cidr_ip="192.168.1.20/32",
            policy="drop",
            priority="7",
            description="x",
        )
        (rule,) = rules(ecs, gid)
        assert (rule.direction, rule.ip_protocol, rule.policy, rule.priority) == ("egress", "TCP", "Drop", "7")
        assert (rule.dest_cidr_ip, rule.source_cidr_ip, rule.description) == ("192.168.1.20/32", "", "x")
        assert rule.security_group_rule_id.startswith("sgr-")

    def test_defaults_to_accept_at_priority_1(self, ecs):
        gid = new_group(ecs)
        egress(ecs, gid, ip_protocol="ALL", port_range="-1/-1", dest_cidr_ip="0.0.0.0/0")
        (rule,) = rules(ecs, gid)
        assert (rule.policy, rule.priority) == ("Accept", "1")

    def test_an_identical_rule_is_not_duplicated(self, ecs):
        gid = new_group(ecs)
        for proto in ("tcp", "TCP"):
            egress(ecs, gid, ip_protocol=proto, port_range="443/443", dest_cidr_ip="10.0.0.0/8")
        assert len(rules(ecs, gid)) == 1

    @pytest.mark.parametrize(
        "perm, code",
        [
            ({"ip_protocol": "tcp", "port_range": "80", "dest_cidr_ip": "10.0.0.0/8"}, "InvalidPortRange.Malformed"),
            ({"ip_protocol": "tcp", "port_range": "90/80", "dest_cidr_ip": "10.0.0.0/8"}, "InvalidPortRange.Malformed"),
            (
                {"ip_protocol": "tcp", "port_range": "1/70000", "dest_cidr_ip": "10.0.0.0/8"},
                "InvalidPortRange.Malformed",
            ),
            ({"ip_protocol": "tcp", "port_range": "-1/-1", "dest_cidr_ip": "10.0.0.0/8"}, "OperationDenied"),
            ({"ip_protocol": "all", "port_range": "80/80", "dest_cidr_ip": "10.0.0.0/8"}, "OperationDenied"),
            (
                {"ip_protocol": "sctp", "port_range": "80/80", "dest_cidr_ip": "10.0.0.0/8"},
                "InvalidIpProtocol.Malformed",
            ),
            (
                {"ip_protocol": "tcp", "port_range": "80/80", "dest_cidr_ip": "10.0.0.0/8", "priority": "101"},
                "InvalidPriority.Malformed",
            ),
            (
                {"ip_protocol": "tcp", "port_range": "80/80", "dest_cidr_ip": "10.0.0.0/8", "policy": "allow"},
                "InvalidPolicy.Malformed",
            ),
            (
                {"ip_protocol": "tcp", "port_range": "80/80", "dest_cidr_ip": "10.0.0.300/32"},
                "InvalidDestCidrIp.Malformed",
            ),
            ({"ip_protocol": "tcp", "port_range": "80/80"}, "MissingParameter"),
        ],
    )
    def test_bad_permissions_get_the_real_codes(self, ecs, perm, code):
        gid = new_group(ecs)
        with pytest.raises(Exception) as exc:
            egress(ecs, gid, **perm)
        assert code_of(exc) == code
        assert rules(ecs, gid) == []

    def test_unknown_group_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            egress(ecs, "sg-nope", ip_protocol="tcp", port_range="80/80", dest_cidr_ip="10.0.0.0/8")
        assert code_of(exc) == "InvalidSecurityGroupId.NotFound"


class TestAuthorizeSecurityGroup:
    def test_adds_an_ingress_rule_from_a_source_cidr(self, ecs):
        ecs.authorize_security_group(
            m.AuthorizeSecurityGroupRequest(
                region_id=REGION,
                security_group_id=GITLAB_SG,
                permissions=[
                    m.AuthorizeSecurityGroupRequestPermissions(
                        ip_protocol="TCP", port_range="443/443", source_cidr_ip="100.104.0.0/16"
                    )
                ],
            )
        )
        added = [r for r in rules(ecs, GITLAB_SG, "ingress") if r.port_range == "443/443"]
        assert [(r.source_cidr_ip, r.dest_cidr_ip) for r in added] == [("100.104.0.0/16", "")]

    def test_bad_source_cidr_is_refused(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.authorize_security_group(
                m.AuthorizeSecurityGroupRequest(
                    region_id=REGION,
                    security_group_id=GITLAB_SG,
                    permissions=[
                        m.AuthorizeSecurityGroupRequestPermissions(
                            ip_protocol="TCP", port_range="443/443", source_cidr_ip="100.104.0.0/33"
                        )
                    ],
                )
            )
        assert code_of(exc) == "InvalidSourceCidrIp.Malformed"


class TestRevokeSecurityGroupEgress:
    def test_revokes_by_rule_id(self, ecs):
        gid = new_group(ecs)
        egress(ecs, gid, ip_protocol="tcp", port_range="80/80", dest_cidr_ip="10.0.0.0/8")
        egress(ecs, gid, ip_protocol="tcp", port_range="81/81", dest_cidr_ip="10.0.0.0/8")
        first = rules(ecs, gid)[0]
        ecs.revoke_security_group_egress(
            m.RevokeSecurityGroupEgressRequest(
                region_id=REGION, security_group_id=gid, security_group_rule_id=[first.security_group_rule_id]
            )
        )
        assert [r.port_range for r in rules(ecs, gid)] == ["81/81"]

    def test_revokes_by_matching_permission(self, ecs):
        gid = new_group(ecs)
        egress(ecs, gid, ip_protocol="tcp", port_range="80/80", dest_cidr_ip="10.0.0.0/8", priority="5")
        ecs.revoke_security_group_egress(
            m.RevokeSecurityGroupEgressRequest(
                region_id=REGION,
                security_group_id=gid,
                permissions=[
                    m.RevokeSecurityGroupEgressRequestPermissions(
                        ip_protocol="TCP", port_range="80/80", dest_cidr_ip="10.0.0.0/8", priority="5"
                    )
                ],
            )
        )
        assert rules(ecs, gid) == []

    def test_unknown_rule_id_is_not_found(self, ecs):
        gid = new_group(ecs)
        with pytest.raises(Exception) as exc:
            ecs.revoke_security_group_egress(
                m.RevokeSecurityGroupEgressRequest(
                    region_id=REGION, security_group_id=gid, security_group_rule_id=["sgr-nope"]
                )
            )
        assert code_of(exc) == "InvalidSecurityGroupRuleId.NotFound"


class TestRevokeSecurityGroup:
    def test_an_ingress_rule_id_is_not_an_egress_rule(self, ecs):
        ingress_id = rules(ecs, GITLAB_SG, "ingress")[0].security_group_rule_id
        with pytest.raises(Exception) as exc:
            ecs.revoke_security_group_egress(
                m.RevokeSecurityGroupEgressRequest(
                    region_id=REGION, security_group_id=GITLAB_SG, security_group_rule_id=[ingress_id]
                )
            )
        assert code_of(exc) == "InvalidSecurityGroupRuleId.NotFound"
        ecs.revoke_security_group(
            m.RevokeSecurityGroupRequest(
                region_id=REGION, security_group_id=GITLAB_SG, security_group_rule_id=[ingress_id]
            )
        )
        assert ingress_id not in [r.security_group_rule_id for r in rules(ecs, GITLAB_SG)]


class TestDeleteSecurityGroup:
    def test_group_used_by_instances_is_a_dependency_violation(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.delete_security_group(m.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=GITLAB_SG))
        assert code_of(exc) == "DependencyViolation" and exc.value.status_code == 403

    def test_group_used_by_an_eni_is_a_dependency_violation_until_the_eni_is_gone(self, sandbox, ecs):
        gid = new_group(ecs)
        eni = new_eni(ecs, gid)
        with pytest.raises(Exception) as exc:
            ecs.delete_security_group(m.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=gid))
        assert code_of(exc) == "DependencyViolation"
        ecs.delete_network_interface(
            m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni.network_interface_id)
        )
        with pytest.raises(Exception) as exc:  # still Deleting: still uses the group
            ecs.delete_security_group(m.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=gid))
        assert code_of(exc) == "DependencyViolation"
        sandbox.world.clock.advance(sandbox.world.ecs.delete_seconds)
        ecs.delete_security_group(m.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=gid))
        with pytest.raises(Exception) as exc:
            rules(ecs, gid)
        assert code_of(exc) == "InvalidSecurityGroupId.NotFound"


class TestTagResources:
    def test_tags_a_group_and_lists_it_back(self, ecs):
        gid = new_group(ecs)
        ecs.tag_resources(
            m.TagResourcesRequest(
                region_id=REGION,
                resource_type="securitygroup",
                resource_id=[gid],
                tag=[m.TagResourcesRequestTag(key="team", value="build")],
            )
        )
        raw = raw_call(
            ecs,
            "ListTagResources",
            {"RegionId": REGION, "ResourceType": "securitygroup", "Tag.1.Key": "team", "Tag.1.Value": "build"},
        )
        assert_sdk_keeps_every_key(raw, m.ListTagResourcesResponseBody)
        assert raw["TagResources"]["TagResource"] == [
            {"ResourceId": gid, "ResourceType": "securitygroup", "TagKey": "team", "TagValue": "build"}
        ]

    def test_reserved_tag_keys_are_refused(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.tag_resources(
                m.TagResourcesRequest(
                    region_id=REGION,
                    resource_type="securitygroup",
                    resource_id=[GITLAB_SG],
                    tag=[m.TagResourcesRequestTag(key="aliyun:x", value="y")],
                )
            )
        assert code_of(exc) == "InvalidTagKey.Malformed"

    def test_unknown_resource_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.tag_resources(
                m.TagResourcesRequest(
                    region_id=REGION,
                    resource_type="eni",
                    resource_id=["eni-nope"],
                    tag=[m.TagResourcesRequestTag(key="k", value="v")],
                )
            )
        assert code_of(exc) == "InvalidResourceId.NotFound"


class TestReaches:
    """EcsBackend.reaches: what the CR build simulation asks when a build clones."""

    @pytest.fixture
    def link(self, sandbox, ecs):
        """A build group (GitLab 80 allowed, everything else dropped) on an ENI the build service attached."""
        gid = new_group(ecs)
        egress(ecs, gid, ip_protocol="tcp", port_range="80/80", dest_cidr_ip=f"{GITLAB_IP}/32")
        egress(ecs, gid, ip_protocol="tcp", port_range="8081/8081", dest_cidr_ip="192.168.1.30/32")
        egress(ecs, gid, ip_protocol="all", port_range="-1/-1", dest_cidr_ip="0.0.0.0/0", policy="drop", priority="100")
        eni = new_eni(ecs, gid).network_interface_id
        grant(ecs, eni)
        sandbox.world.clock.advance(2)
        return gid, eni

    def test_reaches_gitlab_through_the_link(self, sandbox, link):
        assert sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80) == (True, "")

    def test_egress_dropped_by_the_deny_rule(self, sandbox, link):
        ok, why = sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 443)
        assert not ok and "egress to 192.168.1.20:443 is dropped" in why and link[0] in why

    def test_missing_ingress_for_the_reverse_access_block(self, sandbox, link):
        ok, why = sandbox.world.ecs.reaches(BUILD_ACCOUNT, "192.168.1.30", 8081)
        assert not ok and "100.104.0.0/16" in why and GITLAB_SG in why

    def test_ingress_from_only_part_of_the_block_is_not_enough(self, sandbox, ecs, link):
        ecs.revoke_security_group(
            m.RevokeSecurityGroupRequest(
                region_id=REGION,
                security_group_id=GITLAB_SG,
                security_group_rule_id=[rules(ecs, GITLAB_SG, "ingress")[0].security_group_rule_id],
            )
        )
        ecs.authorize_security_group(
            m.AuthorizeSecurityGroupRequest(
                region_id=REGION,
                security_group_id=GITLAB_SG,
                permissions=[
                    m.AuthorizeSecurityGroupRequestPermissions(
                        ip_protocol="TCP", port_range="80/80", source_cidr_ip="100.104.1.0/24"
                    )
                ],
            )
        )
        assert sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80)[0] is False

    def test_ingress_drop_at_equal_priority_beats_accept(self, sandbox, ecs, link):
        ecs.authorize_security_group(
            m.AuthorizeSecurityGroupRequest(
                region_id=REGION,
                security_group_id=GITLAB_SG,
                permissions=[
                    m.AuthorizeSecurityGroupRequestPermissions(
                        ip_protocol="ALL", port_range="-1/-1", source_cidr_ip="100.104.0.0/24", policy="drop"
                    )
                ],
            )
        )
        ok, why = sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80)
        assert not ok and "ingress from 100.104.0.0/16" in why

    def test_eni_not_in_use_yet(self, sandbox, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        grant(ecs, eni)
        ok, why = sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80)
        assert not ok and f"{eni} is Attaching" in why

    def test_no_eni_for_the_account(self, sandbox, link):
        ok, why = sandbox.world.ecs.reaches(999, GITLAB_IP, 80)
        assert not ok and "no network interface grants InstanceAttach to account 999" in why

    def test_a_normal_group_without_egress_rules_allows_egress(self, sandbox, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        grant(ecs, eni)
        sandbox.world.clock.advance(2)
        assert sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80) == (True, "")

    def test_an_enterprise_group_without_egress_rules_denies_egress(self, sandbox, ecs):
        gid = new_group(ecs, security_group_type="enterprise")
        eni = new_eni(ecs, gid).network_interface_id
        grant(ecs, eni)
        sandbox.world.clock.advance(2)
        ok, why = sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80)
        assert not ok and "enterprise" in why and gid in why

    def test_a_stopped_gitlab_is_not_reached(self, sandbox, link):
        sandbox.world.ecs.instances["i-bp1gitlab000000001"].status = "Stopped"
        ok, why = sandbox.world.ecs.reaches(BUILD_ACCOUNT, GITLAB_IP, 80)
        assert not ok and "Stopped" in why
