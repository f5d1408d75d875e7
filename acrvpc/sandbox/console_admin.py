"""Admin routes that perform the registry console's two steps without a public API.

The Container Registry console's "manage link" and "bind account" (Instances > instance >
Repository > Code Source > GitLab) have no API. These routes do what the console does, so
demos and tests can run the pipeline's console mode end to end. Bodies are JSON; a bad body
answers 400 ``{"error": ...}`` (404 for an unknown instance, VPC or vSwitch) and changes nothing.

========================================  ==================================================
``POST /_sandbox/console/link``            ``{"instance_id", "vpc_id", "vswitch_id", "gitlab_ip",
                                           "gitlab_port"?, "allowed"?: ["ip[/n][:port]", ...]}``:
                                           the service-managed security group and ENI. Options
                                           to do it WRONG: ``egress_open`` (Accept ALL to
                                           0.0.0.0/0), ``no_drop`` (no drop-all rule),
                                           ``ingress_open`` (an inbound Accept), ``create_eni``
                                           (false: no ENI)
``POST /_sandbox/console/bind``            ``{"instance_id", "domain", "username"}``: bind the
                                           GitLab code source ("token" is accepted and dropped)
``POST /_sandbox/console/unbind``          ``{"instance_id"}``: remove the GitLab code source
========================================  ==================================================

"manage link" makes, per instance (idempotent: the same body twice changes nothing; another
body edits the link in place, as the console's dialog does):

- a security group in the VPC, ``ServiceManaged=true`` (visible through DescribeSecurityGroups
  with the ``ServiceManaged`` filter), ``InnerAccessPolicy`` Drop, no inbound rule, egress
  Accept TCP to the GitLab IP:port and to each allowed target (priority 1), then Drop ALL to
  0.0.0.0/0 (priority 100);
- an ENI in the vSwitch with that group, ``ServiceManaged=true`` with a ``ServiceID``, which the
  registry's build service account may attach (a Granted InstanceAttach permission): it is
  ``Attaching`` and then ``InUse`` after ``ecs.eni_attach_seconds`` (``Available`` again in a
  zone of ``ecs.eni_attach_fail_zones``), so ``world.ecs.reaches(...)`` admits builds.

Assumptions (the console's resources are not documented beyond "deny all inbound, egress only
to GitLab and the allowed IPs"):
- The group is a basic (``normal``) group named ``cr-vpc-build-<instance id>``; the ENI has the
  same name. ``ServiceID`` is the registry's build service account id.
- An allowed target without a port admits all TCP ports (1/65535).
- Moving the link to another VPC or vSwitch replaces the ENI (and, for a VPC, the group).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .admin import admin_route
from .ecs.models import EcsBackend, EniPermission, NetworkInterface, SecurityGroup
from .ecs.rules import Rule, normalize_permission

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

Reply = tuple[int, Any]
LINK_KEYS = {
    "instance_id",
    "vpc_id",
    "vswitch_id",
    "gitlab_ip",
    "gitlab_port",
    "allowed",
    "egress_open",
    "no_drop",
    "ingress_open",
    "create_eni",
}
BIND_KEYS = {"instance_id", "domain", "username", "type", "token"}
SERVICE_NAME = "Container Registry"


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LinkRequest:
    instance_id: str
    vpc_id: str
    vswitch_id: str
    gitlab_ip: str
    gitlab_port: int
    allowed: tuple[tuple[str, str], ...]  # (cidr, "lo/hi")
    egress_open: bool = False
    no_drop: bool = False
    ingress_open: bool = False
    create_eni: bool = True


def link_name(instance_id: str) -> str:
    """The name of the service-managed group and ENI the console makes for an instance."""
    return f"cr-vpc-build-{instance_id}"


def parse_target(text: str) -> tuple[str, str]:
    """``"192.168.1.30:8081"`` -> ``("192.168.1.30/32", "8081/8081")``; no port -> all ports."""
    host, sep, port = str(text).strip().partition(":")
    try:
        net = ipaddress.ip_network(host, strict=True)
    except ValueError:
        raise _Refused(400, f"allowed: {text!r} is not an IPv4 address or CIDR block (ip[/n][:port])") from None
    if net.version != 4:
        raise _Refused(400, f"allowed: {text!r} is not IPv4")
    if not sep:
        return str(net), "1/65535"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _Refused(400, f"allowed: {text!r}: the port must be 1 to 65535")
    return str(net), f"{port}/{port}"


def _flag(payload: dict[str, Any], key: str, default: bool) -> bool:
    value = payload.get(key, default)
    if not isinstance(value, bool):
        raise _Refused(400, f"{key} must be true or false")
    return value


def parse_link(world: World, payload: dict[str, Any]) -> LinkRequest:
    """Check a ``/_sandbox/console/link`` body against the world (raises ``_Refused``)."""
    unknown = set(payload) - LINK_KEYS
    if unknown:
        raise _Refused(400, f"unknown key(s) {sorted(unknown)}; known: {sorted(LINK_KEYS)}")
    missing = [k for k in ("instance_id", "vpc_id", "vswitch_id", "gitlab_ip") if not payload.get(k)]
    if missing:
        raise _Refused(400, f"console link needs {', '.join(missing)}")
    if payload["instance_id"] not in world.cr.instances:
        raise _Refused(404, f"no registry instance {payload['instance_id']}")
    if world.vpc.vpc(payload["vpc_id"]) is None:
        raise _Refused(404, f"no VPC {payload['vpc_id']}")
    vsw = world.vpc.vswitch(payload["vswitch_id"])
    if vsw is None or vsw.vpc_id != payload["vpc_id"]:
        raise _Refused(404, f"no vSwitch {payload['vswitch_id']} in {payload['vpc_id']}")
    try:
        gitlab_ip = str(ipaddress.IPv4Address(str(payload["gitlab_ip"])))
    except ValueError:
        raise _Refused(400, f"gitlab_ip: {payload['gitlab_ip']!r} is not an IPv4 address") from None
    port = payload.get("gitlab_port", 80)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise _Refused(400, f"gitlab_port: {port!r} must be a number from 1 to 65535")
    allowed = payload.get("allowed") or []
    if not isinstance(allowed, list):
        raise _Refused(400, 'allowed must be a list such as ["192.168.1.30:8081"]')
    return LinkRequest(
        payload["instance_id"],
        payload["vpc_id"],
        payload["vswitch_id"],
        gitlab_ip,
        port,
        tuple(parse_target(t) for t in allowed),
        _flag(payload, "egress_open", False),
        _flag(payload, "no_drop", False),
        _flag(payload, "ingress_open", False),
        _flag(payload, "create_eni", True),
    )


def desired_rules(req: LinkRequest) -> list[dict[str, Any]]:
    """The group's rules as normalized Rule fields (ingress only with ``ingress_open``)."""
    perms: list[tuple[str, dict[str, Any]]] = [
        (
            "egress",
            {
                "Policy": "accept",
                "Priority": "1",
                "IpProtocol": "TCP",
                "PortRange": f"{req.gitlab_port}/{req.gitlab_port}",
                "DestCidrIp": f"{req.gitlab_ip}/32",
                "Description": "GitLab private IP",
            },
        )
    ]
    perms += [
        (
            "egress",
            {
                "Policy": "accept",
                "Priority": "1",
                "IpProtocol": "TCP",
                "PortRange": ports,
                "DestCidrIp": cidr,
                "Description": "Other allowed IP",
            },
        )
        for cidr, ports in req.allowed
    ]
    if req.egress_open:
        perms.append(
            (
                "egress",
                {
                    "Policy": "accept",
                    "Priority": "1",
                    "IpProtocol": "ALL",
                    "PortRange": "-1/-1",
                    "DestCidrIp": "0.0.0.0/0",
                },
            )
        )
    if not req.no_drop:
        perms.append(
            (
                "egress",
                {
                    "Policy": "drop",
                    "Priority": "100",
                    "IpProtocol": "ALL",
                    "PortRange": "-1/-1",
                    "DestCidrIp": "0.0.0.0/0",
                    "Description": "Deny all other egress",
                },
            )
        )
    if req.ingress_open:
        perms.append(
            (
                "ingress",
                {
                    "Policy": "accept",
                    "Priority": "1",
                    "IpProtocol": "ALL",
                    "PortRange": "-1/-1",
                    "SourceCidrIp": "0.0.0.0/0",
                },
            )
        )
    return [normalize_permission(direction, perm) for direction, perm in perms]


def _remove_eni(world: World, eni: NetworkInterface) -> None:
    ecs = world.ecs
    del ecs.enis[eni.eni_id]
    for pid in [p.permission_id for p in ecs.permissions.values() if p.eni_id == eni.eni_id]:
        del ecs.permissions[pid]
    world.vpc.release_ip(eni.vswitch_id, eni.private_ip)


def _put_group(world: World, req: LinkRequest, changes: list[str]) -> SecurityGroup:
    ecs, name = world.ecs, link_name(req.instance_id)
    group = next((g for g in ecs.groups.values() if g.service_managed and g.name == name), None)
    if group is not None and group.vpc_id != req.vpc_id:
        for eni in [n for n in ecs.enis.values() if n.service_managed and group.group_id in n.security_group_ids]:
            _remove_eni(world, eni)
            changes.append(f"deleted ENI {eni.eni_id}")
        del ecs.groups[group.group_id]
        changes.append(f"deleted security group {group.group_id} (link moved to {req.vpc_id})")
        group = None
    if group is None:
        group = SecurityGroup(
            world.new_id("sg"),
            req.vpc_id,
            name,
            f"Managed by {SERVICE_NAME} instance {req.instance_id}: VPC build link",
            "normal",
            "Drop",
            service_managed=True,
            creation_time=ecs.timestamp(),
        )
        ecs.groups[group.group_id] = group
        changes.append(f"created security group {group.group_id}")
    wanted = list({Rule("", **f).identity(): f for f in desired_rules(req)}.values())  # without duplicates
    if {Rule("", **f).identity() for f in wanted} != {r.identity() for r in group.rules} or len(wanted) != len(
        group.rules
    ):
        group.rules = [Rule(world.new_id("sgr"), create_time=ecs.timestamp(), **f) for f in wanted]
        changes.append(f"set {len(wanted)} rule(s) on {group.group_id}")
    group.inner_access_policy = "Drop"
    return group


def _put_eni(world: World, req: LinkRequest, group: SecurityGroup, changes: list[str]) -> NetworkInterface | None:
    ecs, name = world.ecs, link_name(req.instance_id)
    eni = next((n for n in ecs.enis.values() if n.service_managed and n.name == name), None)
    if eni is not None and (not req.create_eni or eni.vswitch_id != req.vswitch_id):
        _remove_eni(world, eni)
        changes.append(f"deleted ENI {eni.eni_id}")
        eni = None
    if not req.create_eni:
        return None
    if eni is not None:
        if eni.security_group_ids != [group.group_id]:
            eni.security_group_ids = [group.group_id]
            changes.append(f"ENI {eni.eni_id} now uses {group.group_id}")
        return eni
    vsw = world.vpc.vswitch(req.vswitch_id)
    assert vsw is not None
    ip = world.vpc.allocate_ip(vsw.vswitch_id)
    if ip is None:
        raise _Refused(409, f"vSwitch {vsw.vswitch_id} has no free IP address for the link's ENI")
    account = int(world.cr.build_service_account_id or 0)
    after = "Available" if vsw.zone_id in ecs.attach_fail_zones else "InUse"
    eni = NetworkInterface(
        world.new_id("eni"),
        vsw.vswitch_id,
        vsw.vpc_id,
        vsw.zone_id,
        ip,
        [group.group_id],
        name,
        f"Managed by {SERVICE_NAME} instance {req.instance_id}: VPC build ENI",
        service_managed=True,
        service_id=account,
        mac=EcsBackend._mac(),
        creation_time=ecs.timestamp(),
        phase=("Attaching", after, world.clock.now()),
    )
    ecs.enis[eni.eni_id] = eni
    permission = EniPermission(world.new_id("eni-perm"), eni.eni_id, account, service_name=SERVICE_NAME)
    ecs.permissions[permission.permission_id] = permission
    changes.append(f"created ENI {eni.eni_id} ({ip})")
    return eni


def manage_link(world: World, req: LinkRequest) -> dict[str, Any]:
    """Converge the instance's console link to ``req``; returns the ids, status and what changed."""
    changes: list[str] = []
    group = _put_group(world, req, changes)
    eni = _put_eni(world, req, group, changes)
    return {
        "security_group_id": group.group_id,
        "network_interface_id": eni.eni_id if eni else "",
        "status": world.ecs.status(eni) if eni else "",
        "changes": changes,
    }


@admin_route("POST", "/_sandbox/console/link")
def _console_link(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    try:
        return 200, manage_link(world, parse_link(world, payload))
    except _Refused as exc:
        return exc.status, {"error": str(exc)}


@admin_route("POST", "/_sandbox/console/bind")
def _console_bind(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    unknown = set(payload) - BIND_KEYS
    if unknown:
        return 400, {"error": f"unknown key(s) {sorted(unknown)}; known: {sorted(BIND_KEYS)}"}
    missing = [k for k in ("instance_id", "domain", "username") if not payload.get(k)]
    if missing:
        return 400, {"error": f"console bind needs {', '.join(missing)}"}
    if payload["instance_id"] not in world.cr.instances:
        return 404, {"error": f"no registry instance {payload['instance_id']}"}
    if not re.match(r"^https?://[^\s/]+", str(payload["domain"])):
        return 400, {"error": f"domain: {payload['domain']!r} is not a URL such as http://192.168.1.20"}
    # The console asks for the token too; the sandbox keeps none (and never echoes it).
    source = world.cr.bind_code_source(
        payload["instance_id"], str(payload.get("type") or "GITLAB"), str(payload["domain"]), str(payload["username"])
    )
    return 200, {
        "instance_id": payload["instance_id"],
        "type": source.type,
        "domain": source.domain,
        "username": source.username,
    }


@admin_route("POST", "/_sandbox/console/unbind")
def _console_unbind(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    instance_id = payload.get("instance_id")
    if not instance_id:
        return 400, {"error": "console unbind needs instance_id"}
    if instance_id not in world.cr.instances:
        return 404, {"error": f"no registry instance {instance_id}"}
    world.cr.unbind_code_source(instance_id, str(payload.get("type") or "GITLAB"))
    return 200, {"instance_id": instance_id, "type": str(payload.get("type") or "GITLAB").upper(), "bound": False}
