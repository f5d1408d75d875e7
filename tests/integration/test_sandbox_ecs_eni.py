"""The sandbox's ECS 2014-05-26 emulation of elastic network interfaces and their permissions, over HTTP
with the real SDK client (security groups and instances: test_sandbox_ecs.py)."""

from __future__ import annotations

import copy

import pytest
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud import clients as cloud
from acrvpc.sandbox.world import load_scenario
from tests.integration.test_sandbox_ecs import (
    BUILD_ACCOUNT,
    BUILD_VSW,
    GITLAB_SG,
    OTHER_VPC,
    REGION,
    VPC_ID,
    assert_sdk_keeps_every_key,
    code_of,
    eni_status,
    grant,
    new_eni,
    new_group,
    raw_call,
)


@pytest.fixture
def ecs(sandbox):
    """test_sandbox_ecs.py's client: the sandbox's ECS in its region, with the sandbox's key."""
    return cloud.ecs_client(REGION, cloud.resolve_access_key(None))


class TestCreateNetworkInterface:
    def test_creates_an_available_eni_with_an_address_in_the_vswitch(self, ecs):
        gid = new_group(ecs)
        raw = raw_call(
            ecs,
            "CreateNetworkInterface",
            {
                "RegionId": REGION,
                "VSwitchId": BUILD_VSW,
                "SecurityGroupId": gid,
                "NetworkInterfaceName": "b",
                "Tag.1.Key": "k",
                "Tag.1.Value": "v",
            },
        )
        assert_sdk_keeps_every_key(raw, m.CreateNetworkInterfaceResponseBody)
        assert (raw["Status"], raw["Type"], raw["VpcId"], raw["ZoneId"]) == (
            "Available",
            "Secondary",
            VPC_ID,
            "cn-hangzhou-h",
        )
        assert raw["PrivateIpAddress"].startswith("192.168.2.")
        assert raw["SecurityGroupIds"] == {"SecurityGroupId": [gid]}
        assert raw["Tags"] == {"Tag": [{"TagKey": "k", "TagValue": "v"}]}

    def test_takes_security_group_ids_list(self, ecs):
        a, b = new_group(ecs), new_group(ecs)
        body = ecs.create_network_interface(
            m.CreateNetworkInterfaceRequest(region_id=REGION, v_switch_id=BUILD_VSW, security_group_ids=[a, b])
        ).body
        assert body.security_group_ids.security_group_id == [a, b]

    def test_client_token_returns_the_same_eni(self, ecs):
        gid = new_group(ecs)
        assert (
            new_eni(ecs, gid, client_token="t").network_interface_id
            == new_eni(ecs, gid, client_token="t").network_interface_id
        )

    def test_unknown_vswitch_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            new_eni(ecs, GITLAB_SG, v_switch_id="vsw-nope")
        assert code_of(exc) == "InvalidVSwitchId.NotFound"

    def test_unknown_group_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            new_eni(ecs, "sg-nope")
        assert code_of(exc) == "InvalidSecurityGroupId.NotFound"

    def test_group_of_another_vpc_is_a_vpc_mismatch(self, sandbox, ecs):
        scenario = copy.deepcopy(load_scenario())
        scenario["vpc"]["vpcs"].append({"vpc_id": OTHER_VPC, "cidr": "10.0.0.0/16", "vswitches": []})
        sandbox.world.reset(scenario)
        gid = new_group(ecs, vpc_id=OTHER_VPC)
        with pytest.raises(Exception) as exc:
            new_eni(ecs, gid)
        assert code_of(exc) == "InvalidOperation.VpcMismatch"

    def test_a_full_vswitch_has_not_enough_ips(self, sandbox, ecs):
        sandbox.world.vpc.vswitch(BUILD_VSW).available_ips = 0
        with pytest.raises(Exception) as exc:
            new_eni(ecs, new_group(ecs))
        assert code_of(exc) == "InvalidVSwitchId.IpNotEnough" and exc.value.status_code == 403


class TestDescribeNetworkInterfaces:
    def test_every_key_is_known_to_the_sdk_model_and_total_count_is_an_int(self, ecs):
        new_eni(ecs, new_group(ecs))
        raw = raw_call(ecs, "DescribeNetworkInterfaces", {"RegionId": REGION})
        assert isinstance(raw["TotalCount"], int) and raw["TotalCount"] == 3  # two instance primaries + ours
        assert_sdk_keeps_every_key(raw, m.DescribeNetworkInterfacesResponseBody)

    def test_filters_by_vswitch_tag_and_status(self, ecs):
        gid = new_group(ecs)
        tagged = new_eni(ecs, gid, tag=[m.CreateNetworkInterfaceRequestTag(key="acr-vpc-build:link", value="x")])
        new_eni(ecs, gid)
        body = ecs.describe_network_interfaces(
            m.DescribeNetworkInterfacesRequest(
                region_id=REGION,
                v_switch_id=BUILD_VSW,
                status="Available",
                tag=[m.DescribeNetworkInterfacesRequestTag(key="acr-vpc-build:link", value="x")],
            )
        ).body
        assert [n.network_interface_id for n in body.network_interface_sets.network_interface_set] == [
            tagged.network_interface_id
        ]

    def test_pages_with_next_token(self, ecs):
        gid = new_group(ecs)
        for _ in range(3):
            new_eni(ecs, gid)
        seen, token = [], None
        while True:
            body = ecs.describe_network_interfaces(
                m.DescribeNetworkInterfacesRequest(
                    region_id=REGION, v_switch_id=BUILD_VSW, max_results=2, next_token=token
                )
            ).body
            seen += [n.network_interface_id for n in body.network_interface_sets.network_interface_set]
            token = body.next_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == 3

    def test_service_managed_filter(self, ecs):
        new_eni(ecs, new_group(ecs))
        body = ecs.describe_network_interfaces(
            m.DescribeNetworkInterfacesRequest(region_id=REGION, service_managed=True)
        ).body
        assert body.network_interface_sets.network_interface_set == [] and body.total_count == 0


class TestModifyNetworkInterfaceAttribute:
    def test_replaces_the_groups_and_name(self, ecs):
        a, b = new_group(ecs), new_group(ecs)
        eni = new_eni(ecs, a)
        ecs.modify_network_interface_attribute(
            m.ModifyNetworkInterfaceAttributeRequest(
                region_id=REGION,
                network_interface_id=eni.network_interface_id,
                security_group_id=[b],
                network_interface_name="renamed",
            )
        )
        body = ecs.describe_network_interfaces(
            m.DescribeNetworkInterfacesRequest(region_id=REGION, network_interface_id=[eni.network_interface_id])
        ).body
        item = body.network_interface_sets.network_interface_set[0]
        assert (item.security_group_ids.security_group_id, item.network_interface_name) == ([b], "renamed")

    def test_unknown_eni_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.modify_network_interface_attribute(
                m.ModifyNetworkInterfaceAttributeRequest(
                    region_id=REGION, network_interface_id="eni-nope", network_interface_name="x"
                )
            )
        assert code_of(exc) == "InvalidEniId.NotFound"


class TestCreateNetworkInterfacePermission:
    def test_answers_a_granted_permission_object(self, ecs):
        eni = new_eni(ecs, new_group(ecs))
        raw = raw_call(
            ecs,
            "CreateNetworkInterfacePermission",
            {
                "RegionId": REGION,
                "NetworkInterfaceId": eni.network_interface_id,
                "AccountId": BUILD_ACCOUNT,
                "Permission": "InstanceAttach",
            },
        )
        assert_sdk_keeps_every_key(raw, m.CreateNetworkInterfacePermissionResponseBody)
        perm = raw["NetworkInterfacePermission"]
        assert (perm["PermissionState"], perm["AccountId"], perm["Permission"]) == (
            "Granted",
            BUILD_ACCOUNT,
            "InstanceAttach",
        )

    def test_the_build_service_attaches_the_eni_over_sandbox_time(self, sandbox, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        grant(ecs, eni)
        assert eni_status(ecs, eni) == "Attaching"
        sandbox.world.clock.advance(2)
        assert eni_status(ecs, eni) == "InUse"

    def test_another_account_is_granted_but_nothing_attaches(self, sandbox, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        assert grant(ecs, eni, account=1234).network_interface_permission.permission_state == "Granted"
        sandbox.world.clock.advance(10)
        assert eni_status(ecs, eni) == "Available"

    def test_attach_falls_back_to_available_in_a_failing_zone(self, sandbox, ecs):
        sandbox.world.ecs.attach_fail_zones = {"cn-hangzhou-h"}
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        grant(ecs, eni)
        assert eni_status(ecs, eni) == "Attaching"
        sandbox.world.clock.advance(2)
        assert eni_status(ecs, eni) == "Available"

    def test_only_instance_attach_exists(self, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        with pytest.raises(Exception) as exc:
            ecs.create_network_interface_permission(
                m.CreateNetworkInterfacePermissionRequest(
                    region_id=REGION, network_interface_id=eni, account_id=1, permission="InstanceDetach"
                )
            )
        assert code_of(exc) == "InvalidParameter"

    def test_unknown_eni_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            grant(ecs, "eni-nope")
        assert code_of(exc) == "InvalidEniId.NotFound"


class TestDescribeNetworkInterfacePermissions:
    def test_lists_the_eni_permissions_in_their_wrapper(self, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        grant(ecs, eni)
        raw = raw_call(ecs, "DescribeNetworkInterfacePermissions", {"RegionId": REGION, "NetworkInterfaceId": eni})
        assert_sdk_keeps_every_key(raw, m.DescribeNetworkInterfacePermissionsResponseBody)
        (perm,) = raw["NetworkInterfacePermissions"]["NetworkInterfacePermission"]
        assert (perm["NetworkInterfaceId"], raw["TotalCount"]) == (eni, 1)

    def test_needs_an_eni_or_permission_ids(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.describe_network_interface_permissions(m.DescribeNetworkInterfacePermissionsRequest(region_id=REGION))
        assert code_of(exc) == "MissingParameter"


class TestDeleteNetworkInterfacePermission:
    def test_the_build_service_detaches_the_eni(self, sandbox, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        pid = grant(ecs, eni).network_interface_permission.network_interface_permission_id
        sandbox.world.clock.advance(2)
        ecs.delete_network_interface_permission(
            m.DeleteNetworkInterfacePermissionRequest(region_id=REGION, network_interface_permission_id=pid)
        )
        assert eni_status(ecs, eni) == "Detaching"
        sandbox.world.clock.advance(2)
        assert eni_status(ecs, eni) == "Available"

    def test_unknown_permission_is_not_found(self, ecs):
        with pytest.raises(Exception) as exc:
            ecs.delete_network_interface_permission(
                m.DeleteNetworkInterfacePermissionRequest(
                    region_id=REGION, network_interface_permission_id="eni-perm-nope"
                )
            )
        assert code_of(exc) == "InvalidNetworkInterfacePermissionId.NotFound"


class TestDeleteNetworkInterface:
    def test_an_eni_in_use_cannot_be_deleted(self, sandbox, ecs):
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        grant(ecs, eni)
        sandbox.world.clock.advance(2)
        with pytest.raises(Exception) as exc:
            ecs.delete_network_interface(m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni))
        assert code_of(exc) == "InvalidOperation.InvalidEniState"

    def test_an_available_eni_is_deleted_and_its_address_released(self, sandbox, ecs):
        vsw = sandbox.world.vpc.vswitch(BUILD_VSW)
        before = vsw.available_ips
        eni = new_eni(ecs, new_group(ecs)).network_interface_id
        assert vsw.available_ips == before - 1
        ecs.delete_network_interface(m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni))
        # Deleting for ecs.eni_delete_seconds: still listed, address still held, a second delete refused
        assert eni_status(ecs, eni) == "Deleting" and vsw.available_ips == before - 1
        with pytest.raises(Exception) as exc:
            ecs.delete_network_interface(m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni))
        assert code_of(exc) == "InvalidOperation.InvalidEniState"
        sandbox.world.clock.advance(sandbox.world.ecs.delete_seconds)
        # then gone
        found = ecs.describe_network_interfaces(
            m.DescribeNetworkInterfacesRequest(region_id=REGION, network_interface_id=[eni])
        ).body.network_interface_sets.network_interface_set
        assert found == [] and vsw.available_ips == before
        with pytest.raises(Exception) as exc:
            ecs.delete_network_interface(m.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni))
        assert code_of(exc) == "InvalidEniId.NotFound"
