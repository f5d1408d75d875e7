"""Pure network logic: VPC-mode zones, CIDR overlaps, security-group rule evaluation.

No I/O except reading the zone table shipped in the package. Everything here takes plain values
(strings, dicts shaped like the SDK models' ``to_map()``) so that preflight, the link stage and
tests share one implementation.

Security-group semantics (ECS user guide "Security group rules" and AuthorizeSecurityGroup):

* A rule's ``Priority`` is 1-100; a smaller number wins. At equal priority ``Drop`` wins.
* The first rule (in that order) that matches a packet decides it; nothing matching means the
  default: denied for ingress (custom rules), and for egress whatever the caller says (a basic
  group allows all outbound traffic by default, an enterprise or managed group denies it).
* When an instance (or ENI) belongs to several groups, the rules of ALL its groups are
  aggregated and sorted together ("rules from all groups are aggregated, sorted, and applied").
  So evaluate the concatenation of every group's rules: an Accept in one group does not beat
  a higher-precedence Drop in another.
* A block (such as 100.104.0.0/16) is admitted only when every address in it is admitted: a
  rule for a /24 inside it is not enough, and a Drop covering part of it denies that part.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

REVERSE_ACCESS_CIDR = "100.104.0.0/16"

IPv4Net = ipaddress.IPv4Network


# -- zones --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def zone_table() -> dict[str, Any]:
    """The zone table shipped in the package (``acrvpc/domain/zones.json``)."""
    return json.loads(resources.files("acrvpc.domain").joinpath("zones.json").read_text(encoding="utf-8"))


def _find_region(region: str) -> tuple[str, dict[str, Any]] | None:
    for cloud, regions in zone_table().get("clouds", {}).items():
        if region in regions:
            return cloud, regions[region]
    return None


def supported_zones(region: str) -> list[str]:
    """The VPC-mode zones the table lists for a region (empty when the region is unknown or retired)."""
    found = _find_region(region)
    if found is None or found[1].get("retired"):
        return []
    return list(found[1].get("zones", []))


def supported_regions(cloud: str | None = None) -> list[str]:
    """The regions the table lists with VPC-mode zones and not retired, in table order (of ``cloud`` when given)."""
    return [
        region
        for name, regions in zone_table().get("clouds", {}).items()
        if cloud in (None, name)
        for region, info in regions.items()
        if info.get("zones") and not info.get("retired")
    ]


def zone_fix(region: str, vpc_id: str) -> str:
    """What to do when the vSwitch's zone has no VPC-mode builds (the fix of the ``zone.vpc_mode`` check).

    In a supported region: use a vSwitch in one of its VPC-mode zones (in the same VPC). In a retired
    or unknown region no vSwitch of the VPC can work (a VPC's vSwitches are all in its region), so the
    build needs an instance and a VPC in a supported region, a few of which are named.
    """
    zones = supported_zones(region)
    if zones:
        return (
            f"use a vSwitch in one of the zones {', '.join(zones)} (create one in {vpc_id} if needed) and set "
            f"network.vswitch_id"
        )
    found = _find_region(region)
    others = supported_regions(found[0] if found else "public")
    few = ", ".join(others[:5]) + (
        f", or another of the {len(others)} in acrvpc/domain/zones.json" if len(others) > 5 else ""
    )
    state = "is retired for VPC builds" if found else "has no VPC-mode zone in the zone table"
    return (
        f"region {region} {state}, so no vSwitch of {vpc_id} (all in {region}) can host the build ENI: the "
        f"build needs an ACR EE instance and a VPC in a supported region ({few}); set region, instance_id, "
        f"network.vpc_id and network.vswitch_id to resources there"
    )


def zone_support(region: str, zone_id: str) -> tuple[bool, str]:
    """Whether a zone supports ACR EE builds in VPC mode, per the documented zone table.

    Args:
        region: the region id, e.g. ``cn-hangzhou`` (public cloud) or ``cn-hangzhou-finance``.
        zone_id: the vSwitch's zone, e.g. ``cn-hangzhou-h``.

    Returns:
        ``(supported, reason)``; the reason names the region and, when unsupported, the zones to
        use instead (or that the region's service has ended).
    """
    found = _find_region(region)
    if found is None:
        known = sorted(r for regions in zone_table().get("clouds", {}).values() for r in regions)
        return False, (f"region {region} is not in the VPC-mode zone table (regions listed: {', '.join(known)})")
    cloud, info = found
    label = f"{info.get('name', region)}, {cloud} cloud"
    if info.get("retired"):
        note = info.get("note") or "the service has ended there"
        return False, f"region {region} ({label}) is retired for VPC builds: {note}"
    zones = list(info.get("zones", []))
    if not zone_id.startswith(region):
        return False, f"zone {zone_id} is not in region {region}; VPC-mode zones there: {', '.join(zones)}"
    if zone_id in zones:
        return True, f"zone {zone_id} supports VPC mode ({label})"
    return False, f"zone {zone_id} does not support VPC mode; in {region} ({label}) use one of: {', '.join(zones)}"


# -- CIDRs ----------------------------------------------------------------------------------------
def _net(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(str(value).strip(), strict=False)


def overlaps(cidr: str, block: str = REVERSE_ACCESS_CIDR) -> str | None:
    """The range two CIDR blocks share, or ``None``.

    CIDR blocks either nest or are disjoint, so the overlap is the smaller of the two:
    ``overlaps("100.64.0.0/10")`` is ``"100.104.0.0/16"`` (a supernet overlaps the whole block),
    ``overlaps("100.104.8.0/22")`` is ``"100.104.8.0/22"``.
    """
    a, b = _net(cidr), _net(block)
    if a.version != b.version or not a.overlaps(b):
        return None
    return str(a if a.prefixlen >= b.prefixlen else b)


def ip_in_any(ip: str, cidrs: Iterable[str]) -> str | None:
    """The first of ``cidrs`` that contains ``ip``, or ``None``."""
    address = ipaddress.ip_address(str(ip).strip())
    for cidr in cidrs:
        if not cidr:
            continue
        net = _net(cidr)
        if net.version == address.version and address in net:
            return str(net)
    return None


def covering_route(routes: Iterable[Mapping[str, Any]], cidr: str) -> Mapping[str, Any] | None:
    """The route (``DestinationCidrBlock`` dict, as DescribeRouteEntryList gives) whose destination
    contains the whole ``cidr`` with the longest prefix, or ``None``."""
    want = _net(cidr)
    best, best_len = None, -1
    for route in routes:
        try:
            dest = _net(route.get("DestinationCidrBlock") or "")
        except ValueError:
            continue
        if dest.version == want.version and want.subnet_of(dest) and dest.prefixlen > best_len:  # type: ignore[arg-type]
            best, best_len = route, dest.prefixlen
    return best


def parse_target(value: str) -> tuple[str, str]:
    """An egress target ``IP``, ``CIDR`` or ``IP:port`` as ``(cidr, "port/port" | "1/65535")``.

    Raises:
        ValueError: the value is not an IPv4 address or CIDR block with an optional port.
    """
    text = str(value).strip()
    host, sep, port = text.partition(":")
    net = ipaddress.ip_network(host, strict=True)
    if net.version != 4:
        raise ValueError(f"{text!r}: only IPv4 destinations are supported")
    if not sep:
        return str(net), "1/65535"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port after ':' must be a number from 1 to 65535")
    return str(net), f"{port}/{port}"


# -- security-group rules ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The outcome of evaluating a block of peers against security-group rules.

    Attributes:
        allowed: every address of the block is admitted.
        rule_id: the deciding rule (the Drop that denies, or the Accept that admits); ``""`` when
            no rule decides (the default applies).
        reason: one line for a person.
        uncovered: the part of the block no rule decides (denied by default), if any.
    """

    allowed: bool
    rule_id: str
    reason: str
    uncovered: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def parse_port_range(text: str | None) -> tuple[int, int]:
    """``"443/443"`` -> ``(443, 443)``; ``"-1/-1"``, empty or ``None`` -> all ports ``(1, 65535)``."""
    if not text:
        return 1, 65535
    start_text, _, end_text = str(text).partition("/")
    start, end = int(start_text), int(end_text or start_text)
    if start == -1 and end == -1:
        return 1, 65535
    return start, end


def _protocol_matches(rule_protocol: str | None, protocol: str) -> bool:
    rp = (rule_protocol or "ALL").upper()
    return rp == "ALL" or rp == protocol.upper()


def _port_matches(rule: Mapping[str, Any], protocol: str, port: int | None) -> bool:
    if port is None or protocol.upper() in ("ICMP", "ICMPV6", "GRE"):
        return True
    start, end = parse_port_range(rule.get("PortRange"))
    return start <= port <= end


def _any_range(text: str | None) -> bool:
    if not text:
        return True
    start, end = parse_port_range(text)
    return start <= 1 and end >= 65535


def _sort_key(rule: Mapping[str, Any]) -> tuple[int, int]:
    try:
        priority = int(rule.get("Priority") or 1)
    except (TypeError, ValueError):
        priority = 1
    drop = str(rule.get("Policy") or "Accept").lower() == "drop"
    return priority, 0 if drop else 1


def _subtract(pieces: list[IPv4Net], cut: IPv4Net) -> tuple[list[IPv4Net], list[IPv4Net]]:
    """Split ``pieces`` into (what ``cut`` leaves, what ``cut`` takes)."""
    left: list[IPv4Net] = []
    taken: list[IPv4Net] = []
    for piece in pieces:
        if piece.subnet_of(cut):
            taken.append(piece)
        elif cut.subnet_of(piece):
            taken.append(cut)
            left.extend(piece.address_exclude(cut))
        else:
            left.append(piece)
    return left, taken


def _fmt(nets: list[IPv4Net]) -> str:
    nets = list(ipaddress.collapse_addresses(nets))
    shown = ", ".join(str(n) for n in nets[:3])
    return shown + (f" (+{len(nets) - 3} more)" if len(nets) > 3 else "")


def _rule_label(rule: Mapping[str, Any]) -> str:
    rid = rule.get("SecurityGroupRuleId") or "(no id)"
    peer = rule.get("SourceCidrIp") or rule.get("DestCidrIp") or ""
    return (
        f"{rid} [{rule.get('Policy') or 'Accept'} priority {rule.get('Priority') or 1} "
        f"{rule.get('IpProtocol') or 'ALL'} {rule.get('PortRange') or '-1/-1'} {peer}]"
    )


def evaluate(
    rules: Iterable[Mapping[str, Any]],
    *,
    direction: str,
    peer_cidr: str,
    protocol: str = "TCP",
    port: int | None = None,
    local_ip: str | None = None,
    default_accept: bool = False,
) -> Verdict:
    """Whether a block of peers may talk to (ingress) or be reached from (egress) a group's members.

    Args:
        rules: Permission dicts (``DescribeSecurityGroupAttribute`` ``Permissions.Permission[]``
            entries as ``to_map()`` gives them), from ALL the groups of the instance or ENI.
        direction: ``ingress`` (peer = ``SourceCidrIp``) or ``egress`` (peer = ``DestCidrIp``).
        peer_cidr: the block that must be admitted as a whole, e.g. ``100.104.0.0/16``.
        protocol: ``TCP``, ``UDP``, ``ICMP`` or ``ALL``.
        port: destination port; ``None`` for any.
        local_ip: the member's own address (ingress ``DestCidrIp`` / egress ``SourceCidrIp`` of
            quintuple rules); when unknown, such a restricted Accept is not counted while such
            a Drop is (conservative).
        default_accept: what happens when no rule matches (ingress: ``False``).

    Returns:
        A :class:`Verdict`.
    """
    direction = direction.lower()
    peer_key, local_key = ("SourceCidrIp", "DestCidrIp") if direction == "ingress" else ("DestCidrIp", "SourceCidrIp")
    block = _net(peer_cidr)
    if block.version != 4:
        raise ValueError(f"{peer_cidr}: only IPv4 blocks are evaluated")
    undecided: list[IPv4Net] = [block]
    accepted_by: list[str] = []
    accepted: list[IPv4Net] = []
    candidates = [r for r in rules if str(r.get("Direction") or direction).lower() == direction]
    for rule in sorted(candidates, key=_sort_key):
        peer = rule.get(peer_key)
        if not peer:
            continue  # security-group or prefix-list peers never cover a CIDR block here
        try:
            rule_net = _net(peer)
        except ValueError:
            continue
        if (
            rule_net.version != 4
            or not _protocol_matches(rule.get("IpProtocol"), protocol)
            or not _port_matches(rule, protocol, port)
        ):
            continue
        drop = str(rule.get("Policy") or "Accept").lower() == "drop"
        if not _local_matches(rule.get(local_key), local_ip, drop) or not (
            drop or _any_range(rule.get("SourcePortRange"))
        ):
            continue
        undecided, taken = _subtract(undecided, rule_net)
        if not taken:
            continue
        rid = str(rule.get("SecurityGroupRuleId") or "")
        if drop:
            part = "all of" if taken == [block] else f"{_fmt(taken)} of"
            return Verdict(False, rid, f"rule {_rule_label(rule)} drops {part} {block}", "")
        accepted_by.append(rid)
        accepted.extend(taken)
        if not undecided:
            return Verdict(
                True,
                rid,
                f"{block} is admitted by rule {_rule_label(rule)}"
                if len(accepted_by) == 1
                else f"{block} is admitted by rules {', '.join(a or '(no id)' for a in accepted_by)}",
            )
    if default_accept:
        return Verdict(True, "", f"no rule decides {_fmt(undecided)} of {block}: the default admits it")
    if undecided == [block]:
        return Verdict(
            False, "", f"no {direction} rule admits {block} on {protocol} port {port or 'any'}", _fmt(undecided)
        )
    return Verdict(
        False,
        "",
        f"only {_fmt(accepted)} of {block} is admitted (by rule "
        f"{', '.join(a or '(no id)' for a in accepted_by)}); no rule admits the rest of the block",
        _fmt(undecided),
    )


def _local_matches(rule_local: str | None, local_ip: str | None, drop: bool) -> bool:
    if not rule_local:
        return True
    if local_ip is None:
        return drop
    try:
        return ipaddress.ip_address(local_ip) in _net(rule_local)
    except ValueError:
        return drop


def admits_ingress(
    rules: Iterable[Mapping[str, Any]],
    source_cidr: str = REVERSE_ACCESS_CIDR,
    protocol: str = "TCP",
    port: int | None = None,
    *,
    dest_ip: str | None = None,
) -> Verdict:
    """Whether ingress ``rules`` (of all the instance's groups) admit the whole ``source_cidr`` block.

    Example:
        >>> admits_ingress([{"Direction": "ingress", "Policy": "Accept", "Priority": "1", "IpProtocol": "TCP",
        ...                  "PortRange": "80/80", "SourceCidrIp": "100.104.0.0/16"}], port=80).allowed
        True
    """
    return evaluate(
        rules,
        direction="ingress",
        peer_cidr=source_cidr,
        protocol=protocol,
        port=port,
        local_ip=dest_ip,
        default_accept=False,
    )


def admits_egress(
    rules: Iterable[Mapping[str, Any]],
    dest_cidr: str,
    protocol: str = "TCP",
    port: int | None = None,
    *,
    default_accept: bool = False,
) -> Verdict:
    """Whether egress ``rules`` let members reach the whole ``dest_cidr`` block (link stage)."""
    return evaluate(
        rules, direction="egress", peer_cidr=dest_cidr, protocol=protocol, port=port, default_accept=default_accept
    )


def ingress_rule_fix(
    security_group_id: str, port: int, source_cidr: str = REVERSE_ACCESS_CIDR, region: str = ""
) -> str:
    """The exact AuthorizeSecurityGroup call that admits ``source_cidr`` on TCP ``port``."""
    where = f" --RegionId {region}" if region else ""
    return (
        f"add an ingress rule to {security_group_id}: aliyun ecs AuthorizeSecurityGroup{where} "
        f"--SecurityGroupId {security_group_id} --Permissions.1.IpProtocol TCP "
        f"--Permissions.1.PortRange {port}/{port} --Permissions.1.SourceCidrIp {source_cidr} "
        f"--Permissions.1.Policy Accept --Permissions.1.Priority 1 "
        f"--Permissions.1.Description 'ACR VPC build reverse access'"
    )
