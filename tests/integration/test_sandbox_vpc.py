"""The sandbox's VPC 2016-04-28 emulation, over HTTP with the real SDK client."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_vpc20160428 import models as vpc_models

from acrvpc.cloud import clients as cloud
from tests import sdk_shapes

REGION = "cn-hangzhou"
VPC_ID = "vpc-bp1sandbox00000001"
BUILD_VSW = "vsw-bp1build000000001"
VPC_TABLE = "vtb-bp1sandbox00000001"
VBR_ID = "vbr-bp1idc000000000001"
VBR_TABLE = "vtb-bp1vbr0000000001"


@pytest.fixture
def vpc(sandbox):
    return cloud.vpc_client(REGION, cloud.resolve_access_key(None))


def raw_call(client: Any, action: str, query: dict[str, Any]) -> dict[str, Any]:
    return sdk_shapes.raw_call(client, action, query, "2016-04-28")


assert_sdk_keeps_every_key = sdk_shapes.assert_sdk_keeps_every_key


def calls(sandbox, action: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.world.calls.list() if c["action"] == action]


class TestDescribeVpcAttribute:
    def test_shape(self, vpc, sandbox):
        # given the default world / when
        body = vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=VPC_ID)).body
        # then
        assert body.cidr_block == "192.168.0.0/16"
        assert body.secondary_cidr_blocks.secondary_cidr_block == []
        assert BUILD_VSW in body.v_switch_ids.v_switch_id
        assert body.vrouter_id == "vrt-bp1sandbox00000001"
        assert body.status == "Available"
        assert isinstance(body.owner_id, int)

    def test_sdk_model_knows_every_key(self, vpc, sandbox):
        raw = raw_call(vpc, "DescribeVpcAttribute", {"RegionId": REGION, "VpcId": VPC_ID})
        assert_sdk_keeps_every_key(raw, vpc_models.DescribeVpcAttributeResponseBody)

    def test_secondary_cidrs_are_listed(self, vpc, sandbox):
        sandbox.world.vpc.vpcs[VPC_ID].secondary_cidrs.append("172.16.0.0/12")
        body = vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id=VPC_ID)).body
        assert body.secondary_cidr_blocks.secondary_cidr_block == ["172.16.0.0/12"]

    def test_unknown_vpc(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id="vpc-nope"))
        assert err.value.code == "InvalidVpcID.NotFound"
        assert err.value.status_code == 404

    def test_other_region_finds_nothing(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id="cn-beijing", vpc_id=VPC_ID))
        assert err.value.code == "InvalidVpcID.NotFound"

    def test_region_is_required(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(vpc_id=VPC_ID))
        assert err.value.code == "MissingParameter"


class TestDescribeVSwitchAttributes:
    def test_shape_without_region(self, vpc, sandbox):
        body = vpc.describe_vswitch_attributes(vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=BUILD_VSW)).body
        assert (body.vpc_id, body.zone_id, body.cidr_block) == (VPC_ID, "cn-hangzhou-h", "192.168.2.0/24")
        assert body.available_ip_address_count == 250
        assert body.route_table.route_table_id == VPC_TABLE
        assert body.route_table.route_table_type == "System"

    def test_sdk_model_knows_every_key(self, vpc, sandbox):
        raw = raw_call(vpc, "DescribeVSwitchAttributes", {"VSwitchId": BUILD_VSW})
        assert_sdk_keeps_every_key(raw, vpc_models.DescribeVSwitchAttributesResponseBody)

    def test_free_ips_follow_allocations(self, vpc, sandbox):
        sandbox.world.vpc.allocate_ip(BUILD_VSW)
        body = vpc.describe_vswitch_attributes(vpc_models.DescribeVSwitchAttributesRequest(v_switch_id=BUILD_VSW)).body
        assert body.available_ip_address_count == 249

    def test_unknown_vswitch_uses_the_vpc_spelling(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_vswitch_attributes(vpc_models.DescribeVSwitchAttributesRequest(v_switch_id="vsw-nope"))
        assert err.value.code == "InvalidVswitchID.NotFound"
        assert err.value.status_code == 404

    def test_other_region_finds_nothing(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_vswitch_attributes(
                vpc_models.DescribeVSwitchAttributesRequest(region_id="cn-shanghai", v_switch_id=BUILD_VSW)
            )
        assert err.value.code == "InvalidVswitchID.NotFound"


class TestDescribeVSwitches:
    def test_filters(self, vpc, sandbox):
        by_vpc = vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(vpc_id=VPC_ID)).body
        by_id = vpc.describe_vswitches(
            vpc_models.DescribeVSwitchesRequest(region_id=REGION, v_switch_id=BUILD_VSW)
        ).body
        by_zone = vpc.describe_vswitches(
            vpc_models.DescribeVSwitchesRequest(region_id=REGION, zone_id="cn-hangzhou-k")
        ).body
        assert by_vpc.total_count == 2 and isinstance(by_vpc.total_count, int)
        assert [v.v_switch_id for v in by_id.v_switches.v_switch] == [BUILD_VSW]
        assert by_zone.total_count == 0 and by_zone.v_switches.v_switch == []

    def test_sdk_model_knows_every_key(self, vpc, sandbox):
        raw = raw_call(vpc, "DescribeVSwitches", {"RegionId": REGION})
        assert_sdk_keeps_every_key(raw, vpc_models.DescribeVSwitchesResponseBody)

    def test_paging(self, vpc, sandbox):
        body = vpc.describe_vswitches(
            vpc_models.DescribeVSwitchesRequest(region_id=REGION, page_size=1, page_number=2)
        ).body
        assert (body.total_count, body.page_number, len(body.v_switches.v_switch)) == (2, 2, 1)

    def test_needs_region_or_vpc(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_vswitches(vpc_models.DescribeVSwitchesRequest(zone_id="cn-hangzhou-h"))
        assert err.value.code == "MissingParameter"


class TestDescribeRouteTableList:
    def test_default_router_type_is_vrouter(self, vpc, sandbox):
        body = vpc.describe_route_table_list(vpc_models.DescribeRouteTableListRequest(region_id=REGION)).body
        tables = body.router_table_list.router_table_list_type
        assert [t.route_table_id for t in tables] == [VPC_TABLE]
        assert tables[0].router_type == "VRouter" and tables[0].vpc_id == VPC_ID
        assert BUILD_VSW in tables[0].v_switch_ids.v_switch_id

    def test_vbr_table_by_router_id(self, vpc, sandbox):
        body = vpc.describe_route_table_list(
            vpc_models.DescribeRouteTableListRequest(region_id=REGION, router_type="VBR", router_id=VBR_ID)
        ).body
        tables = body.router_table_list.router_table_list_type
        assert [(t.route_table_id, t.router_type, t.router_id) for t in tables] == [(VBR_TABLE, "VBR", VBR_ID)]

    def test_sdk_model_knows_every_key(self, vpc, sandbox):
        raw = raw_call(vpc, "DescribeRouteTableList", {"RegionId": REGION, "RouterType": "VBR"})
        assert_sdk_keeps_every_key(raw, vpc_models.DescribeRouteTableListResponseBody)

    def test_vpc_id_forces_vrouter(self, vpc, sandbox):
        body = vpc.describe_route_table_list(
            vpc_models.DescribeRouteTableListRequest(region_id=REGION, router_type="VBR", vpc_id=VPC_ID)
        ).body
        assert [t.router_type for t in body.router_table_list.router_table_list_type] == ["VRouter"]

    def test_bad_router_type(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_route_table_list(
                vpc_models.DescribeRouteTableListRequest(region_id=REGION, router_type="Router")
            )
        assert err.value.code == "InvalidParameter"


class TestDescribeRouteEntryList:
    def test_vbr_return_route_by_destination(self, vpc, sandbox):
        body = vpc.describe_route_entry_list(
            vpc_models.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=VBR_TABLE, destination_cidr_block="100.104.0.0/16"
            )
        ).body
        entries = body.route_entrys.route_entry
        assert [e.destination_cidr_block for e in entries] == ["100.104.0.0/16"]
        hop = entries[0].next_hops.next_hop[0]
        assert (hop.next_hop_type, hop.enabled) == ("RouterInterface", 1)
        assert entries[0].status == "Available" and entries[0].type == "Custom"

    def test_system_routes_for_vswitches(self, vpc, sandbox):
        body = vpc.describe_route_entry_list(
            vpc_models.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=VPC_TABLE, route_entry_type="System", max_result=100
            )
        ).body
        assert {e.destination_cidr_block for e in body.route_entrys.route_entry} == {"192.168.1.0/24", "192.168.2.0/24"}

    def test_sdk_model_knows_every_key(self, vpc, sandbox):
        raw = raw_call(vpc, "DescribeRouteEntryList", {"RegionId": REGION, "RouteTableId": VBR_TABLE})
        assert_sdk_keeps_every_key(raw, vpc_models.DescribeRouteEntryListResponseBody)

    def test_paging_with_next_token(self, vpc, sandbox):
        first = vpc.describe_route_entry_list(
            vpc_models.DescribeRouteEntryListRequest(region_id=REGION, route_table_id=VBR_TABLE, max_result=2)
        ).body
        second = vpc.describe_route_entry_list(
            vpc_models.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=VBR_TABLE, max_result=2, next_token=first.next_token
            )
        ).body
        assert first.total_count == 3 and len(first.route_entrys.route_entry) == 2 and first.next_token
        assert len(second.route_entrys.route_entry) == 1 and second.next_token == ""

    def test_unknown_table(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.describe_route_entry_list(
                vpc_models.DescribeRouteEntryListRequest(region_id=REGION, route_table_id="vtb-nope")
            )
        assert err.value.code == "InvalidRouteTableId.NotFound"


class TestDescribeVirtualBorderRouters:
    def _by(self, vpc, key: str, *values: str):
        flt = vpc_models.DescribeVirtualBorderRoutersRequestFilter(key=key, value=list(values))
        return vpc.describe_virtual_border_routers(
            vpc_models.DescribeVirtualBorderRoutersRequest(region_id=REGION, filter=[flt])
        ).body

    def test_filter_by_vbr_id(self, vpc, sandbox):
        body = self._by(vpc, "VbrId", VBR_ID)
        vbrs = body.virtual_border_router_set.virtual_border_router_type
        assert [(v.vbr_id, v.route_table_id, v.status) for v in vbrs] == [(VBR_ID, VBR_TABLE, "active")]
        assert isinstance(vbrs[0].vlan_id, int)

    def test_sdk_model_knows_every_key(self, vpc, sandbox):
        raw = raw_call(
            vpc,
            "DescribeVirtualBorderRouters",
            {"RegionId": REGION, "Filter.1.Key": "VbrId", "Filter.1.Value.1": VBR_ID},
        )
        assert_sdk_keeps_every_key(raw, vpc_models.DescribeVirtualBorderRoutersResponseBody)

    def test_status_filter_is_case_insensitive(self, vpc, sandbox):
        assert self._by(vpc, "Status", "Active").total_count == 1

    def test_no_match_is_an_empty_set(self, vpc, sandbox):
        body = self._by(vpc, "VbrId", "vbr-nope")
        assert body.total_count == 0 and body.virtual_border_router_set.virtual_border_router_type == []

    def test_unknown_filter_key(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            self._by(vpc, "Colour", "blue")
        assert err.value.code == "InvalidFilterKey.ValueNotSupported"


def create(vpc, table: str, destination: str, hop_type: str = "RouterInterface", hop_id: str = "ri-bp1x", **extra: Any):
    return vpc.create_route_entry(
        vpc_models.CreateRouteEntryRequest(
            region_id=REGION,
            route_table_id=table,
            destination_cidr_block=destination,
            next_hop_type=hop_type,
            next_hop_id=hop_id,
            **extra,
        )
    ).body


def remove_route(sandbox, table: str, destination: str) -> None:
    t = sandbox.world.vpc.route_tables[table]
    t.entries = [e for e in t.entries if e.destination != destination]


class TestCreateRouteEntry:
    @pytest.mark.parametrize("destination", ["100.104.0.0/16", "100.64.0.0/10", "100.100.2.0/24"])
    def test_vrouter_refuses_the_cloud_service_block(self, vpc, sandbox, destination):
        with pytest.raises(Exception) as err:
            create(vpc, VPC_TABLE, destination, "Instance", "i-bp1gitlab000000001")
        assert err.value.code == "InvalidDestinationCidrBlock"
        assert len(sandbox.world.vpc.route_tables[VPC_TABLE].entries) == 3

    def test_vrouter_accepts_a_default_route(self, vpc, sandbox):
        body = create(vpc, VPC_TABLE, "0.0.0.0/0", "NatGateway", "ngw-bp1x")
        assert body.route_entry_id.startswith("rte-")

    def test_vrouter_refuses_a_destination_inside_a_vswitch(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            create(vpc, VPC_TABLE, "192.168.2.0/25", "Instance", "i-x")
        assert err.value.code == "InvalidCidrBlock"

    def test_vbr_accepts_the_acr_return_route_towards_the_vpc(self, vpc, sandbox):
        # given a VBR without the return route
        remove_route(sandbox, VBR_TABLE, "100.104.0.0/16")
        # when
        body = create(vpc, VBR_TABLE, "100.104.0.0/16", "RouterInterface", "ri-bp1vbr2vpc00000001")
        # then it is Creating, then Available
        entry = vpc.describe_route_entry_list(
            vpc_models.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=VBR_TABLE, route_entry_id=body.route_entry_id
            )
        ).body.route_entrys
        assert entry.route_entry[0].status == "Creating"
        sandbox.world.clock.advance(5)
        assert sandbox.world.vpc.route_covering(VBR_TABLE, "100.104.0.0/16").route_entry_id == body.route_entry_id
        assert calls(sandbox, "CreateRouteEntry")[-1]["writes"] is True

    def test_vbr_refuses_the_block_towards_the_data_center(self, vpc, sandbox):
        remove_route(sandbox, VBR_TABLE, "100.104.0.0/16")
        with pytest.raises(Exception) as err:
            create(vpc, VBR_TABLE, "100.104.0.0/16", "PhysicalConnection", "pc-bp1idc000000000001")
        assert err.value.code == "InvalidCidrBlock"

    def test_duplicate_destination(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            create(vpc, VBR_TABLE, "10.20.0.0/16", "PhysicalConnection", "pc-bp1idc000000000001")
        assert err.value.code == "InvalidCIDRBlock.Duplicate"

    def test_second_route_while_one_is_creating(self, vpc, sandbox):
        create(vpc, VPC_TABLE, "172.16.0.0/16", "Instance", "i-a")
        with pytest.raises(Exception) as err:
            create(vpc, VPC_TABLE, "172.17.0.0/16", "Instance", "i-a")
        assert err.value.code == "IncorrectRouteEntryStatus"
        sandbox.world.clock.advance(5)
        assert create(vpc, VPC_TABLE, "172.17.0.0/16", "Instance", "i-a").route_entry_id

    def test_client_token_is_idempotent(self, vpc, sandbox):
        first = create(vpc, VPC_TABLE, "172.16.0.0/16", "Instance", "i-a", client_token="tok-1")
        again = create(vpc, VPC_TABLE, "172.16.0.0/16", "Instance", "i-a", client_token="tok-1")
        assert first.route_entry_id == again.route_entry_id
        assert len(sandbox.world.vpc.route_tables[VPC_TABLE].entries) == 4

    def test_dry_run_creates_nothing(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            create(vpc, VPC_TABLE, "172.16.0.0/16", "Instance", "i-a", dry_run=True)
        assert err.value.code == "DryRunOperation"
        assert len(sandbox.world.vpc.route_tables[VPC_TABLE].entries) == 3

    def test_next_hop_required(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            vpc.create_route_entry(
                vpc_models.CreateRouteEntryRequest(
                    region_id=REGION, route_table_id=VPC_TABLE, destination_cidr_block="172.16.0.0/16"
                )
            )
        assert err.value.code == "InvalidNexthopTypeAndList.BothNull"

    def test_malformed_destination(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            create(vpc, VPC_TABLE, "172.16.0.1/16", "Instance", "i-a")
        assert err.value.code == "InvalidCidrBlock.Malformed"

    def test_unknown_table(self, vpc, sandbox):
        with pytest.raises(Exception) as err:
            create(vpc, "vtb-nope", "172.16.0.0/16", "Instance", "i-a")
        assert err.value.code == "InvalidRouteTableId.NotFound"
