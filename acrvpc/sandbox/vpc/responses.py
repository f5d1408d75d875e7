"""One handler per VPC 2016-04-28 Action: parse, call the model, shape the reply.

Reply keys and wrapper objects follow the SDK response models (``alibabacloud_vpc20160428``
7.2.2): e.g. ``RouterTableList.RouterTableListType[]``, ``RouteEntrys.RouteEntry[]`` with
``NextHops.NextHop[]``, ``VirtualBorderRouterSet.VirtualBorderRouterType[]``; ``TotalCount``
is an integer in all of them; VBR status words are lower case (``active``).

Assumptions:
- ``DescribeRouteTableList`` defaults ``RouterType`` to ``VRouter`` (as documented) and a
  ``VpcId`` forces it, so a VBR's table is listed only with ``RouterType=VBR``.
- ``DescribeRouteEntryList`` on an unknown table answers ``InvalidRouteTableId.NotFound`` (404);
  ``DescribeVirtualBorderRouters`` with a ``VbrId`` filter that matches nothing answers an empty set.
- A ``RegionId`` other than the sandbox's region finds nothing (the resource is in another region).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ..core.errors import InvalidParameter, MissingParameter
from ..core.registry import Service, register_service
from ..core.request import RpcRequest
from . import errors
from .models import SEEDED_TIME, RouteEntry, RouteTable, Vbr, VSwitch, parse_cidr

service = register_service(Service("vpc", "2016-04-28", host="vpc.{region}.aliyuncs.com"))

_VBR_FILTERS: dict[str, Callable[[Vbr], str]] = {
    "vbrid": lambda v: v.vbr_id,
    "physicalconnectionid": lambda v: v.physical_connection_id,
    "status": lambda v: v.status,
    "name": lambda v: v.name,
    "accesspointid": lambda v: v.access_point_id,
    "eccid": lambda v: v.ecc_id,
    "type": lambda v: v.type,
}


def _owner(world: Any) -> int:
    return int(world.account_id)


def _page(req: RpcRequest, items: list[Any], max_size: int = 50) -> tuple[int, int, list[Any]]:
    number = req.get_int("PageNumber", 1) or 1
    size = req.get_int("PageSize", 10) or 10
    if number < 1:
        raise InvalidParameter("PageNumber")
    if not 1 <= size <= max_size:
        raise InvalidParameter("PageSize", f"Valid values: 1 to {max_size}.")
    return number, size, items[(number - 1) * size : number * size]


def _region(world: Any, req: RpcRequest, *, required: bool = True) -> str | None:
    region = req.get("RegionId")
    if region is None and required:
        raise MissingParameter("RegionId")
    return region


# -- VPCs and vSwitches ---------------------------------------------------------------------------
@service.action("DescribeVpcAttribute")
def describe_vpc_attribute(world: Any, req: RpcRequest) -> dict[str, Any]:
    region = _region(world, req)
    vpc_id = req.require("VpcId")
    vpc = world.vpc.vpc(vpc_id)
    if vpc is None or not world.vpc.in_region(region):
        raise errors.InvalidVpcIdNotFound(vpc_id)
    return {
        "RegionId": world.region,
        "VpcId": vpc.vpc_id,
        "VpcName": vpc.name,
        "Status": vpc.status,
        "Description": vpc.description,
        "CidrBlock": vpc.cidr,
        "SecondaryCidrBlocks": {"SecondaryCidrBlock": list(vpc.secondary_cidrs)},
        "UserCidrs": {"UserCidr": list(vpc.user_cidrs)},
        "VRouterId": vpc.vrouter_id,
        "IsDefault": vpc.is_default,
        "ClassicLinkEnabled": False,
        "EnabledIpv6": False,
        "Ipv6CidrBlock": "",
        "DhcpOptionsSetId": "",
        "DhcpOptionsSetStatus": "",
        "DnsHostnameStatus": "DISABLED",
        "SupportIpv4Gateway": False,
        "Ipv4GatewayId": "",
        "CreationTime": SEEDED_TIME,
        "VSwitchIds": {"VSwitchId": list(vpc.vswitch_ids)},
        "CloudResources": {
            "CloudResourceSetType": [
                {"ResourceType": "VSwitch", "ResourceCount": len(vpc.vswitch_ids)},
                {"ResourceType": "VRouter", "ResourceCount": 1},
                {"ResourceType": "RouteTable", "ResourceCount": 1},
            ]
        },
        "AssociatedCens": {"AssociatedCen": []},
        "Tags": {"Tag": []},
        "ResourceGroupId": "rg-acfmsandbox0001",
        "OwnerId": _owner(world),
    }


def _vswitch_body(world: Any, vsw: VSwitch) -> dict[str, Any]:
    vpc = world.vpc.vpc(vsw.vpc_id)
    return {
        "VSwitchId": vsw.vswitch_id,
        "VSwitchName": vsw.name,
        "VpcId": vsw.vpc_id,
        "ZoneId": vsw.zone_id,
        "CidrBlock": vsw.cidr,
        "Status": vsw.status,
        "AvailableIpAddressCount": vsw.available_ips,
        "Description": vsw.description,
        "IsDefault": vsw.is_default,
        "EnabledIpv6": False,
        "Ipv6CidrBlock": "",
        "NetworkAclId": "",
        "ShareType": "Sharing",
        "CreationTime": SEEDED_TIME,
        "RouteTable": {"RouteTableId": vpc.route_table_id if vpc else "", "RouteTableType": "System"},
        "Tags": {"Tag": []},
        "ResourceGroupId": "rg-acfmsandbox0001",
        "OwnerId": _owner(world),
    }


@service.action("DescribeVSwitchAttributes")
def describe_vswitch_attributes(world: Any, req: RpcRequest) -> dict[str, Any]:
    region = _region(world, req, required=False)
    vswitch_id = req.require("VSwitchId")
    vsw = world.vpc.vswitch(vswitch_id)
    if vsw is None or not world.vpc.in_region(region):
        raise errors.InvalidVSwitchIdNotFound(vswitch_id)
    return _vswitch_body(world, vsw)


@service.action("DescribeVSwitches")
def describe_vswitches(world: Any, req: RpcRequest) -> dict[str, Any]:
    region, vpc_id = req.get("RegionId"), req.get("VpcId")
    if region is None and vpc_id is None:
        raise MissingParameter("RegionId")
    found: list[VSwitch] = []
    if world.vpc.in_region(region):
        is_default = req.get_bool("IsDefault")
        for vsw in world.vpc.vswitches.values():
            vpc = world.vpc.vpc(vsw.vpc_id)
            if (
                (vpc_id is None or vsw.vpc_id == vpc_id)
                and req.get("VSwitchId") in (None, vsw.vswitch_id)
                and req.get("ZoneId") in (None, vsw.zone_id)
                and req.get("VSwitchName") in (None, vsw.name)
                and req.get("RouteTableId") in (None, vpc.route_table_id if vpc else None)
                and (is_default is None or vsw.is_default == is_default)
            ):
                found.append(vsw)
    number, size, page = _page(req, found)
    return {
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": len(found),
        "VSwitches": {"VSwitch": [_vswitch_body(world, v) for v in page]},
    }


# -- route tables and routes ---------------------------------------------------------------------
def _table_body(world: Any, table: RouteTable) -> dict[str, Any]:
    vswitch_ids = world.vpc.vpc(table.vpc_id).vswitch_ids if table.router_type == "VRouter" else []
    return {
        "RouteTableId": table.route_table_id,
        "RouteTableName": table.name,
        "RouteTableType": table.table_type,
        "RouterId": table.router_id,
        "RouterType": table.router_type,
        "VpcId": table.vpc_id,
        "Status": "Available",
        "Description": table.description,
        "AssociateType": "VSwitch" if table.router_type == "VRouter" else "",
        "CreationTime": SEEDED_TIME,
        "RoutePropagationEnable": True,
        "VSwitchIds": {"VSwitchId": list(vswitch_ids)},
        "GatewayIds": {"GatewayIds": []},
        "Tags": {"Tag": []},
        "ResourceGroupId": "rg-acfmsandbox0001",
        "OwnerId": _owner(world),
    }


@service.action("DescribeRouteTableList")
def describe_route_table_list(world: Any, req: RpcRequest) -> dict[str, Any]:
    region = _region(world, req)
    vpc_id = req.get("VpcId")
    router_type = "VRouter" if vpc_id else (req.get("RouterType") or "VRouter")
    if router_type not in ("VRouter", "VBR"):
        raise InvalidParameter("RouterType", "Valid values: VRouter, VBR.")
    found: list[RouteTable] = []
    if world.vpc.in_region(region):
        for table in world.vpc.route_tables.values():
            if (
                table.router_type == router_type
                and vpc_id in (None, table.vpc_id)
                and req.get("RouterId") in (None, table.router_id)
                and req.get("RouteTableId") in (None, table.route_table_id)
                and req.get("RouteTableType") in (None, table.table_type)
                and req.get("RouteTableName") in (None, table.name)
            ):
                found.append(table)
    number, size, page = _page(req, found)
    return {
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": len(found),
        "RouterTableList": {"RouterTableListType": [_table_body(world, t) for t in page]},
    }


def _entry_body(world: Any, entry: RouteEntry) -> dict[str, Any]:
    return {
        "RouteEntryId": entry.route_entry_id,
        "RouteTableId": entry.route_table_id,
        "DestinationCidrBlock": entry.destination,
        "Type": entry.type,
        "Status": world.vpc.route_status(entry),
        "IpVersion": "ipv6" if ":" in entry.destination else "ipv4",
        "RouteEntryName": entry.name,
        "Description": entry.description,
        "Origin": "",
        "ServiceType": "",
        "GmtModified": entry.gmt_modified,
        "NextHops": {
            "NextHop": [
                {
                    "NextHopType": hop["type"],
                    "NextHopId": hop["id"],
                    "Enabled": 1,
                    "Weight": hop.get("weight")
                    if hop.get("weight") is not None
                    else (0 if hop["type"] == "local" else 100),
                    "NextHopRegionId": world.region,
                    "NextHopRelatedInfo": {"InstanceId": "", "InstanceType": "", "RegionId": ""},
                }
                for hop in entry.next_hops
            ]
        },
    }


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(token)
        return int(value)
    except ValueError:
        raise InvalidParameter("NextToken", "The token is not valid.") from None


@service.action("DescribeRouteEntryList")
def describe_route_entry_list(world: Any, req: RpcRequest) -> dict[str, Any]:
    region = _region(world, req)
    table_id = req.require("RouteTableId")
    table = world.vpc.route_table(table_id)
    if table is None or not world.vpc.in_region(region):
        raise errors.InvalidRouteTableIdNotFound(table_id)
    max_result = req.get_int("MaxResult", 10) or 10
    if not 1 <= max_result <= 100:
        raise InvalidParameter("MaxResult", "Valid values: 1 to 100.")
    wanted: set[str] = set()
    single = req.get("DestinationCidrBlock")
    for text in ([single] if single else []) + req.get_list("DestCidrBlockList"):
        wanted.add(str(parse_cidr(text)))
    ip_version = (req.get("IpVersion") or "").lower()
    found = []
    for entry in table.entries:
        body = _entry_body(world, entry)
        hops = body["NextHops"]["NextHop"]
        if (
            (not wanted or entry.destination in wanted)
            and req.get("RouteEntryId") in (None, entry.route_entry_id)
            and req.get("RouteEntryName") in (None, entry.name)
            and req.get("RouteEntryType") in (None, entry.type)
            and (not ip_version or body["IpVersion"] == ip_version)
            and (req.get("NextHopId") is None or any(h["NextHopId"] == req.get("NextHopId") for h in hops))
            and (req.get("NextHopType") is None or any(h["NextHopType"] == req.get("NextHopType") for h in hops))
        ):
            found.append(body)
    start = _offset(req.get("NextToken"))
    page = found[start : start + max_result]
    more = start + max_result < len(found)
    return {
        "TotalCount": len(found),
        "NextToken": _token(start + max_result) if more else "",
        "RouteEntrys": {"RouteEntry": page},
    }


@service.action("CreateRouteEntry", writes=True)
def create_route_entry(world: Any, req: RpcRequest) -> dict[str, Any]:
    table_id = req.require("RouteTableId")
    destination = req.require("DestinationCidrBlock")
    hop_list = req.get_struct_list("NextHopList")
    hop_type, hop_id = req.get("NextHopType"), req.get("NextHopId")
    if hop_list and (hop_type or hop_id):
        raise errors.NextHopBothNotNull()
    if hop_list:
        table = world.vpc.route_table(table_id)
        if table is not None and table.router_type == "VBR":
            raise errors.InvalidRouterType()
        if not 2 <= len(hop_list) <= 4:
            raise errors.InvalidNextHopListSize()
        next_hops = [
            {
                "type": h.get("NextHopType", "RouterInterface"),
                "id": h.get("NextHopId", ""),
                "weight": int(h["Weight"]) if h.get("Weight") else None,
            }
            for h in hop_list
        ]
    else:
        if not hop_id:
            if not hop_type:
                raise errors.NextHopBothNull()
            raise errors.InvalidNextHopNotFound("NextHopId is required with NextHopType.")
        next_hops = [{"type": hop_type or "Instance", "id": hop_id, "weight": None}]
    if any(not h["id"] for h in next_hops):
        raise errors.InvalidNextHopNotFound()
    entry = world.vpc.create_route_entry(
        table_id,
        destination,
        next_hops,
        name=req.get("RouteEntryName", ""),
        description=req.get("Description", ""),
        client_token=req.get("ClientToken", ""),
        dry_run=bool(req.get_bool("DryRun", False)),
        ecmp=bool(hop_list),
    )
    return {"RouteEntryId": entry.route_entry_id}


# -- Express Connect virtual border routers ---------------------------------------------------------
def _vbr_body(world: Any, vbr: Vbr) -> dict[str, Any]:
    return {
        "VbrId": vbr.vbr_id,
        "Name": vbr.name,
        "Description": vbr.description,
        "Status": vbr.status,
        "RouteTableId": vbr.route_table_id,
        "PhysicalConnectionId": vbr.physical_connection_id,
        "PhysicalConnectionStatus": "Enabled",
        "PhysicalConnectionBusinessStatus": "Normal",
        "PhysicalConnectionOwnerUid": str(world.account_id),
        "AccessPointId": vbr.access_point_id,
        "VlanId": vbr.vlan_id,
        "VlanInterfaceId": vbr.vlan_interface_id,
        "LocalGatewayIp": vbr.local_gateway_ip,
        "PeerGatewayIp": vbr.peer_gateway_ip,
        "PeeringSubnetMask": vbr.peering_subnet_mask,
        "EnableIpv6": False,
        "Type": vbr.type,
        "EccId": vbr.ecc_id,
        "CreationTime": SEEDED_TIME,
        "ActivationTime": SEEDED_TIME,
        "AssociatedPhysicalConnections": {"AssociatedPhysicalConnection": []},
        "AssociatedCens": {"AssociatedCen": []},
        "ResourceGroupId": "rg-acfmsandbox0001",
    }


@service.action("DescribeVirtualBorderRouters")
def describe_virtual_border_routers(world: Any, req: RpcRequest) -> dict[str, Any]:
    region = _region(world, req)
    filters: list[tuple[Callable[[Vbr], str], list[str]]] = []
    for f in req.get_struct_list("Filter"):
        key = str(f.get("Key", ""))
        getter = _VBR_FILTERS.get(key.lower())
        if getter is None:
            raise errors.InvalidFilterKey(key)
        values = f.get("Value") or []
        if isinstance(values, str):
            values = [values]
        filters.append((getter, [str(v).lower() for v in values]))
    found = []
    if world.vpc.in_region(region):
        for vbr in world.vpc.vbrs.values():
            if all(not values or getter(vbr).lower() in values for getter, values in filters):
                found.append(vbr)
    number, size, page = _page(req, found)
    return {
        "PageNumber": number,
        "PageSize": size,
        "TotalCount": len(found),
        "VirtualBorderRouterSet": {"VirtualBorderRouterType": [_vbr_body(world, v) for v in page]},
    }
