"""One handler per ECS Action: parse, call the model, shape the reply.

Shapes follow the SDK response-body models of alibabacloud-ecs20140526 (keys it does not know are
dropped by the client): wrapper objects (``SecurityGroups.SecurityGroup[]``,
``Permissions.Permission[]``, ``NetworkInterfaceSets.NetworkInterfaceSet[]``, ``Tags.Tag[]`` with
``TagKey``/``TagValue``), rule ``Priority`` as a string, ``TotalCount`` as an int.

Assumptions:
- ``NextToken`` values are opaque sandbox tokens; paging with ``PageNumber``/``PageSize`` still works
  where the SDK has them. ``TotalCount`` is reported in both paging styles.
- ``DescribeSecurityGroupAttribute`` returns every rule unless ``MaxResults``/``NextToken`` is given.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from ..core.errors import InvalidParameter, MissingParameter
from ..core.registry import Service, register_service
from . import errors as e
from .models import EniPermission, Instance, NetworkInterface, SecurityGroup, check_tags, has_tags
from .rules import Rule

if TYPE_CHECKING:  # pragma: no cover
    from ..core.request import RpcRequest
    from ..world import World

service = register_service(Service("ecs", "2014-05-26", host="ecs.{region}.aliyuncs.com"))

_RULE_FIELDS = (
    "IpProtocol",
    "PortRange",
    "Policy",
    "Priority",
    "SourceCidrIp",
    "DestCidrIp",
    "Description",
    "SourceGroupId",
    "DestGroupId",
    "SourcePrefixListId",
    "DestPrefixListId",
    "Ipv6SourceCidrIp",
    "Ipv6DestCidrIp",
)


# -- parsing and paging -------------------------------------------------------------------------
def _region(req: RpcRequest) -> str:
    return req.require("RegionId")


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"sandbox-offset:{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        prefix, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix == "sandbox-offset" and number.isdigit():
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise e.InvalidNextTokenMalformed(token)


def _page(
    items: list[Any], req: RpcRequest, *, default: int, maximum: int, token_paging: bool = True
) -> tuple[list[Any], dict[str, Any]]:
    """One page of ``items`` and the paging keys of the reply (NextToken, PageNumber, PageSize, TotalCount)."""
    token, max_results = req.get("NextToken"), req.get_int("MaxResults")
    if token_paging and (token is not None or max_results is not None):
        size = default if max_results is None else max_results
        if not 1 <= size <= maximum:
            raise InvalidParameter("MaxResults", f"It must be 1 to {maximum}.")
        start = _decode_token(token) if token else 0
        nxt = _encode_token(start + size) if start + size < len(items) else ""
        return items[start : start + size], {
            "NextToken": nxt,
            "PageNumber": 1,
            "PageSize": size,
            "TotalCount": len(items),
        }
    number, size = req.get_int("PageNumber", 1) or 1, req.get_int("PageSize", default) or default
    if number < 1:
        raise InvalidParameter("PageNumber", "It must be 1 or more.")
    if not 1 <= size <= maximum:
        raise InvalidParameter("PageSize", f"It must be 1 to {maximum}.")
    start = (number - 1) * size
    paging: dict[str, int | str] = {"PageNumber": number, "PageSize": size, "TotalCount": len(items)}
    if token_paging:
        paging["NextToken"] = ""
    return items[start : start + size], paging


def _permissions(req: RpcRequest) -> list[dict[str, Any]]:
    """``Permissions.N.*``, or the deprecated flat rule parameters as one permission."""
    perms = req.get_struct_list("Permissions")
    if not perms and req.get("IpProtocol"):
        perms = [{k: req.get(k) for k in _RULE_FIELDS if req.get(k)}]
    return perms


# -- shapes -------------------------------------------------------------------------------------
def _tags(tags: dict[str, str]) -> dict[str, Any]:
    return {"Tag": [{"TagKey": k, "TagValue": v} for k, v in tags.items()]}


def _group_item(world: World, g: SecurityGroup, with_count: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "SecurityGroupId": g.group_id,
        "SecurityGroupName": g.name,
        "Description": g.description,
        "VpcId": g.vpc_id,
        "SecurityGroupType": g.group_type,
        "CreationTime": g.creation_time,
        "ResourceGroupId": "",
        "ServiceManaged": g.service_managed,
        "RuleCount": len(g.rules),
        "GroupToGroupRuleCount": 0,
        "Tags": _tags(g.tags),
    }
    if with_count:
        used = len(world.ecs.group_users(g.group_id))
        item.update({"EcsCount": used, "AvailableInstanceAmount": max(0, 2000 - used)})
    return item


def _rule_item(r: Rule) -> dict[str, Any]:
    ingress = r.direction == "ingress"
    return {
        "SecurityGroupRuleId": r.rule_id,
        "Direction": r.direction,
        "Policy": r.policy,
        "Priority": str(r.priority),
        "IpProtocol": r.ip_protocol,
        "PortRange": r.port_range,
        "SourceCidrIp": r.cidr if ingress else "",
        "DestCidrIp": "" if ingress else r.cidr,
        "SourcePortRange": "",
        "SourceGroupId": "",
        "DestGroupId": "",
        "SourcePrefixListId": "",
        "DestPrefixListId": "",
        "Ipv6SourceCidrIp": "",
        "Ipv6DestCidrIp": "",
        "NicType": "intranet",
        "Description": r.description,
        "CreateTime": r.create_time,
    }


def _private_ips(ip: str) -> dict[str, Any]:
    return {"PrivateIpSet": [{"PrivateIpAddress": ip, "Primary": True}]}


def _eni_item(world: World, n: NetworkInterface) -> dict[str, Any]:
    item: dict[str, Any] = {
        "NetworkInterfaceId": n.eni_id,
        "NetworkInterfaceName": n.name,
        "Description": n.description,
        "Status": world.ecs.status(n),
        "Type": n.eni_type,
        "InstanceId": n.instance_id,
        "VpcId": n.vpc_id,
        "VSwitchId": n.vswitch_id,
        "ZoneId": n.zone_id,
        "PrivateIpAddress": n.private_ip,
        "MacAddress": n.mac,
        "OwnerId": world.account_id,
        "ResourceGroupId": "",
        "ServiceManaged": n.service_managed,
        "SourceDestCheck": False,
        "CreationTime": n.creation_time,
        "DeleteOnRelease": n.eni_type == "Primary",
        "SecurityGroupIds": {"SecurityGroupId": list(n.security_group_ids)},
        "PrivateIpSets": _private_ips(n.private_ip),
        "Ipv6Sets": {"Ipv6Set": []},
        "Ipv4PrefixSets": {"Ipv4PrefixSet": []},
        "Ipv6PrefixSets": {"Ipv6PrefixSet": []},
        "Tags": _tags(n.tags),
    }
    if n.service_managed:
        item["ServiceID"] = n.service_id
    if n.instance_id:
        item["Attachment"] = {"InstanceId": n.instance_id, "DeviceIndex": 0, "NetworkCardIndex": 0}
    return item


def _instance_item(world: World, i: Instance) -> dict[str, Any]:
    eni = world.ecs.enis.get(i.primary_eni_id)
    return {
        "InstanceId": i.instance_id,
        "InstanceName": i.name,
        "HostName": i.name,
        "Status": i.status,
        "RegionId": world.region,
        "ZoneId": i.zone_id,
        "InstanceType": i.instance_type,
        "InstanceNetworkType": "vpc",
        "InstanceChargeType": "PostPaid",
        "OSType": "linux",
        "Cpu": 2,
        "Memory": 8192,
        "CreationTime": i.creation_time,
        "Description": "",
        "ResourceGroupId": "",
        "VpcAttributes": {
            "VpcId": i.vpc_id,
            "VSwitchId": i.vswitch_id,
            "NatIpAddress": "",
            "PrivateIpAddress": {"IpAddress": [i.private_ip]},
        },
        "InnerIpAddress": {"IpAddress": []},
        "PublicIpAddress": {"IpAddress": []},
        "SecurityGroupIds": {"SecurityGroupId": list(i.security_group_ids)},
        "NetworkInterfaces": {
            "NetworkInterface": [
                {
                    "NetworkInterfaceId": i.primary_eni_id,
                    "Type": "Primary",
                    "PrimaryIpAddress": i.private_ip,
                    "MacAddress": eni.mac if eni else "",
                    "PrivateIpSets": _private_ips(i.private_ip),
                }
            ]
        },
        "OperationLocks": {"LockReason": []},
        "Tags": _tags(i.tags),
    }


def _permission_item(p: EniPermission) -> dict[str, Any]:
    return {
        "NetworkInterfacePermissionId": p.permission_id,
        "NetworkInterfaceId": p.eni_id,
        "AccountId": p.account_id,
        "Permission": p.permission,
        "PermissionState": p.state,
        "ServiceName": p.service_name,
    }


# -- instances ----------------------------------------------------------------------------------
@service.action("DescribeInstances")
def describe_instances(world: World, req: RpcRequest) -> dict[str, Any]:
    ids, ips = req.get_json_list("InstanceIds"), req.get_json_list("PrivateIpAddresses")
    if len(ids) > 100 or len(ips) > 100:
        raise InvalidParameter("InstanceIds", "At most 100 values.")
    found = world.ecs.find_instances(
        _region(req),
        ids=ids,
        ips=ips,
        vpc_id=req.get("VpcId"),
        vswitch_id=req.get("VSwitchId"),
        group_id=req.get("SecurityGroupId"),
        zone_id=req.get("ZoneId"),
        status=req.get("Status"),
        name=req.get("InstanceName"),
        tags=req.get_tags(),
    )
    page, paging = _page(found, req, default=10, maximum=100)
    return {**paging, "Instances": {"Instance": [_instance_item(world, i) for i in page]}}


# -- security groups ----------------------------------------------------------------------------
@service.action("DescribeSecurityGroups")
def describe_security_groups(world: World, req: RpcRequest) -> dict[str, Any]:
    region = _region(req)
    ids = req.get_json_list("SecurityGroupIds")
    if req.get("SecurityGroupId"):
        ids = [req.require("SecurityGroupId")] + ids
    if len(ids) > 100:
        raise InvalidParameter("SecurityGroupIds", "At most 100 values.")
    found = world.ecs.find_security_groups(
        region,
        vpc_id=req.get("VpcId"),
        ids=ids,
        name=req.get("SecurityGroupName"),
        group_type=req.get("SecurityGroupType"),
        tags=req.get_tags(),
        service_managed=req.get_bool("ServiceManaged"),
    )
    if (req.get("NetworkType") or "vpc").lower() != "vpc":
        found = []
    by_token = req.get("MaxResults") is not None or req.get("NextToken") is not None
    page, paging = _page(found, req, default=10, maximum=100 if by_token else 50)
    with_count = bool(req.get_bool("IsQueryEcsCount", False))
    return {
        **paging,
        "RegionId": region,
        "SecurityGroups": {"SecurityGroup": [_group_item(world, g, with_count) for g in page]},
    }


@service.action("DescribeSecurityGroupAttribute")
def describe_security_group_attribute(world: World, req: RpcRequest) -> dict[str, Any]:
    region = _region(req)
    group = world.ecs.group(req.require("SecurityGroupId"), region)
    direction = (req.get("Direction") or "all").lower()
    if direction not in ("all", "ingress", "egress"):
        raise InvalidParameter("Direction", "Valid values: ingress, egress, all.")
    rules = [r for r in group.rules if direction == "all" or r.direction == direction]
    next_token = ""
    if req.get("MaxResults") is not None or req.get("NextToken") is not None:
        rules, paging = _page(rules, req, default=500, maximum=1000)
        next_token = paging["NextToken"]
    return {
        "RegionId": region,
        "SecurityGroupId": group.group_id,
        "SecurityGroupName": group.name,
        "Description": group.description,
        "VpcId": group.vpc_id,
        "InnerAccessPolicy": group.inner_access_policy,
        "NextToken": next_token,
        "Permissions": {"Permission": [_rule_item(r) for r in rules]},
    }


@service.action("CreateSecurityGroup", writes=True)
def create_security_group(world: World, req: RpcRequest) -> dict[str, Any]:
    group = world.ecs.create_security_group(
        _region(req),
        req.get("VpcId"),
        req.get("SecurityGroupName", "") or "",
        req.get("Description", "") or "",
        (req.get("SecurityGroupType", "normal") or "normal").lower(),
        check_tags(req.get_tags()),
        req.get("ClientToken"),
    )
    return {"SecurityGroupId": group.group_id}


@service.action("ModifySecurityGroupPolicy", writes=True)
def modify_security_group_policy(world: World, req: RpcRequest) -> dict[str, Any]:
    world.ecs.modify_policy(_region(req), req.require("SecurityGroupId"), req.require("InnerAccessPolicy"))
    return {}


def _authorize(direction: str):
    def handler(world: World, req: RpcRequest) -> dict[str, Any]:
        world.ecs.authorize(_region(req), req.require("SecurityGroupId"), direction, _permissions(req))
        return {}

    return handler


def _revoke(direction: str):
    def handler(world: World, req: RpcRequest) -> dict[str, Any]:
        world.ecs.revoke(
            _region(req),
            req.require("SecurityGroupId"),
            direction,
            req.get_list("SecurityGroupRuleId"),
            _permissions(req),
        )
        return {}

    return handler


service.action("AuthorizeSecurityGroup", writes=True)(_authorize("ingress"))
service.action("AuthorizeSecurityGroupEgress", writes=True)(_authorize("egress"))
service.action("RevokeSecurityGroup", writes=True)(_revoke("ingress"))
service.action("RevokeSecurityGroupEgress", writes=True)(_revoke("egress"))


@service.action("DeleteSecurityGroup", writes=True)
def delete_security_group(world: World, req: RpcRequest) -> dict[str, Any]:
    world.ecs.delete_security_group(_region(req), req.require("SecurityGroupId"))
    return {}


# -- network interfaces -------------------------------------------------------------------------
@service.action("CreateNetworkInterface", writes=True)
def create_network_interface(world: World, req: RpcRequest) -> dict[str, Any]:
    region, vswitch_id = _region(req), req.require("VSwitchId")
    single, many = req.get("SecurityGroupId"), req.get_list("SecurityGroupIds")
    if single and many:
        raise InvalidParameter("SecurityGroupIds", "Specify SecurityGroupId or SecurityGroupIds.N, not both.")
    for name in ("PrimaryIpAddress", "SecondaryPrivateIpAddressCount", "Ipv6AddressCount", "Ipv4PrefixCount"):
        if req.get(name):
            raise e.UnsupportedParameter(name)
    if (req.get("InstanceType") or "Secondary") != "Secondary":
        raise e.UnsupportedParameter("InstanceType")
    eni = world.ecs.create_network_interface(
        region,
        vswitch_id,
        [single] if single else many,
        req.get("NetworkInterfaceName", "") or "",
        req.get("Description", "") or "",
        check_tags(req.get_tags()),
        req.get("ClientToken"),
    )
    item = _eni_item(world, eni)
    keep = (
        "NetworkInterfaceId",
        "NetworkInterfaceName",
        "Description",
        "Status",
        "Type",
        "VpcId",
        "VSwitchId",
        "ZoneId",
        "PrivateIpAddress",
        "MacAddress",
        "OwnerId",
        "ResourceGroupId",
        "ServiceManaged",
        "SourceDestCheck",
        "SecurityGroupIds",
        "PrivateIpSets",
        "Ipv6Sets",
        "Ipv4PrefixSets",
        "Ipv6PrefixSets",
        "Tags",
    )
    return {k: item[k] for k in keep}


@service.action("DescribeNetworkInterfaces")
def describe_network_interfaces(world: World, req: RpcRequest) -> dict[str, Any]:
    ids = req.get_list("NetworkInterfaceId")
    if len(ids) > 100:
        raise InvalidParameter("NetworkInterfaceId", "At most 100 values.")
    ips = req.get_list("PrivateIpAddress") + ([req.require("PrimaryIpAddress")] if req.get("PrimaryIpAddress") else [])
    found = world.ecs.find_network_interfaces(
        _region(req),
        ids=ids,
        vpc_id=req.get("VpcId"),
        vswitch_id=req.get("VSwitchId"),
        group_id=req.get("SecurityGroupId"),
        service_managed=req.get_bool("ServiceManaged"),
        status=req.get("Status"),
        eni_type=req.get("Type"),
        tags=req.get_tags(),
        ips=ips,
        instance_id=req.get("InstanceId"),
        name=req.get("NetworkInterfaceName"),
    )
    page, paging = _page(found, req, default=10, maximum=500)
    return {**paging, "NetworkInterfaceSets": {"NetworkInterfaceSet": [_eni_item(world, n) for n in page]}}


@service.action("ModifyNetworkInterfaceAttribute", writes=True)
def modify_network_interface_attribute(world: World, req: RpcRequest) -> dict[str, Any]:
    world.ecs.modify_network_interface(
        _region(req),
        req.require("NetworkInterfaceId"),
        req.get_list("SecurityGroupId"),
        req.get("NetworkInterfaceName"),
        req.get("Description"),
    )
    return {}


@service.action("DeleteNetworkInterface", writes=True)
def delete_network_interface(world: World, req: RpcRequest) -> dict[str, Any]:
    world.ecs.delete_network_interface(_region(req), req.require("NetworkInterfaceId"))
    return {}


@service.action("CreateNetworkInterfacePermission", writes=True)
def create_network_interface_permission(world: World, req: RpcRequest) -> dict[str, Any]:
    region, eni_id = _region(req), req.require("NetworkInterfaceId")
    account = req.get_int("AccountId")
    if account is None:
        raise MissingParameter("AccountId")
    perm = world.ecs.create_permission(region, eni_id, account, req.require("Permission"))
    return {"NetworkInterfacePermission": _permission_item(perm)}


@service.action("DescribeNetworkInterfacePermissions")
def describe_network_interface_permissions(world: World, req: RpcRequest) -> dict[str, Any]:
    found = world.ecs.find_permissions(
        _region(req), req.get("NetworkInterfaceId"), req.get_list("NetworkInterfacePermissionId")
    )
    page, paging = _page(found, req, default=10, maximum=100, token_paging=False)
    return {
        **paging,
        "NetworkInterfacePermissions": {"NetworkInterfacePermission": [_permission_item(p) for p in page]},
    }


@service.action("DeleteNetworkInterfacePermission", writes=True)
def delete_network_interface_permission(world: World, req: RpcRequest) -> dict[str, Any]:
    req.get_bool("Force")  # accepted; the sandbox detaches either way
    world.ecs.delete_permission(_region(req), req.require("NetworkInterfacePermissionId"))
    return {}


# -- tags ---------------------------------------------------------------------------------------
@service.action("TagResources", writes=True)
def tag_resources(world: World, req: RpcRequest) -> dict[str, Any]:
    ids, tags = req.get_list("ResourceId"), check_tags(req.get_tags())
    if not ids:
        raise MissingParameter("ResourceId.1")
    if not tags:
        raise MissingParameter("Tag.1.Key")
    world.ecs.tag_resources(_region(req), req.require("ResourceType").lower(), ids, tags)
    return {}


@service.action("ListTagResources")
def list_tag_resources(world: World, req: RpcRequest) -> dict[str, Any]:
    region, rtype = _region(req), req.require("ResourceType").lower()
    ids, wanted = req.get_list("ResourceId"), req.get_tags()
    if not ids and not wanted:
        raise MissingParameter("ResourceId.1")
    table = world.ecs.taggable(rtype) if world.ecs.in_region(region) else {}
    rows = [
        {"ResourceId": rid, "ResourceType": rtype, "TagKey": k, "TagValue": v}
        for rid, res in table.items()
        if (not ids or rid in ids) and has_tags(res.tags, wanted)
        for k, v in res.tags.items()
    ]
    token = req.get("NextToken")
    start = _decode_token(token) if token else 0
    page = rows[start : start + 50]
    return {
        "NextToken": _encode_token(start + 50) if start + 50 < len(rows) else "",
        "TagResources": {"TagResource": page},
    }
