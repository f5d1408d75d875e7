"""Security-group rule semantics of ECS, as pure functions (no state, no HTTP).

Validation of ``Permissions.N`` with the real error codes, and evaluation in Alibaba Cloud's
order: lower priority number first, Drop before Accept at equal priority, first match decides.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from ..core.errors import MissingParameter
from . import errors as e

PROTOCOLS = {"TCP", "UDP", "ICMP", "GRE", "ALL"}
PORTLESS = {"ICMP", "GRE", "ALL"}
REVERSE_ACCESS = ipaddress.IPv4Network("100.104.0.0/16")
RULE_LIMIT = 200
_UNSUPPORTED_RULE_FIELDS = (
    "SourceGroupId",
    "DestGroupId",
    "SourcePrefixListId",
    "DestPrefixListId",
    "Ipv6SourceCidrIp",
    "Ipv6DestCidrIp",
    "PortRangeListId",
)


def parse_port_range(protocol: str, value: str) -> tuple[int, int]:
    """``"80/443"`` -> ``(80, 443)``; ``"-1/-1"`` only (and always) for ALL, ICMP and GRE."""
    m = re.fullmatch(r"\s*(-?\d+)/(-?\d+)\s*", value or "")
    if not m:
        raise e.InvalidPortRangeMalformed(value)
    lo, hi = int(m.group(1)), int(m.group(2))
    if protocol in PORTLESS or (lo, hi) == (-1, -1):
        if protocol not in PORTLESS or (lo, hi) != (-1, -1):
            raise e.IpProtocolPortRangeMismatch(protocol, value)
        return lo, hi
    if not 1 <= lo <= hi <= 65535:
        raise e.InvalidPortRangeMalformed(value)
    return lo, hi


def normalize_cidr(value: str, direction: str) -> str:
    """An IPv4 address or CIDR block in canonical form, or the direction's Malformed error."""
    bad = e.InvalidSourceCidrIpMalformed if direction == "ingress" else e.InvalidDestCidrIpMalformed
    text = (value or "").strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.version == 4:
                return str(net)
        elif ipaddress.ip_address(text).version == 4:
            return text
    except ValueError:
        pass
    raise bad(value)


def normalize_permission(direction: str, perm: dict[str, Any]) -> dict[str, Any]:
    """Validate one ``Permissions.N`` struct (API keys) into Rule fields, raising the real codes."""
    for name in _UNSUPPORTED_RULE_FIELDS:
        if perm.get(name):
            raise e.UnsupportedParameter(name)
    raw_proto = str(perm.get("IpProtocol") or "").strip()
    if not raw_proto:
        raise MissingParameter("IpProtocol")
    protocol = raw_proto.upper()
    if protocol not in PROTOCOLS:
        raise e.InvalidIpProtocolMalformed(raw_proto)
    lo, hi = parse_port_range(protocol, str(perm.get("PortRange") or ""))
    raw_policy = str(perm.get("Policy") or "accept")
    policy = {"accept": "Accept", "drop": "Drop"}.get(raw_policy.strip().lower())
    if policy is None:
        raise e.InvalidPolicyMalformed(raw_policy)
    raw_priority = str(perm.get("Priority") or "1").strip()
    if not raw_priority.isdigit() or not 1 <= int(raw_priority) <= 100:
        raise e.InvalidPriorityMalformed(raw_priority)
    address = perm.get("SourceCidrIp" if direction == "ingress" else "DestCidrIp")
    if not address:
        raise e.MissingRuleAddress(direction)
    return {
        "direction": direction,
        "ip_protocol": protocol,
        "port_range": f"{lo}/{hi}",
        "policy": policy,
        "priority": int(raw_priority),
        "cidr": normalize_cidr(str(address), direction),
        "description": str(perm.get("Description") or ""),
    }


@dataclass
class Rule:
    rule_id: str
    direction: str  # ingress | egress
    policy: str  # Accept | Drop
    priority: int  # 1 (first) .. 100
    ip_protocol: str  # TCP | UDP | ICMP | GRE | ALL
    port_range: str  # "80/80" or "-1/-1"
    cidr: str  # SourceCidrIp (ingress) or DestCidrIp (egress)
    description: str = ""
    create_time: str = ""

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.cidr, strict=False)  # type: ignore[return-value]

    def identity(self) -> tuple[Any, ...]:
        return (self.direction, self.ip_protocol, self.port_range, self.network, self.policy, self.priority)

    def covers(self, protocol: str, port: int) -> bool:
        """Whether the rule's protocol and ports cover ``protocol`` traffic to ``port``."""
        if self.ip_protocol == "ALL":
            return True
        if self.ip_protocol != protocol:
            return False
        lo, hi = (int(p) for p in self.port_range.split("/"))
        return lo <= port <= hi


def evaluation_order(rules: list[Rule]) -> list[Rule]:
    """Alibaba Cloud's order: lower priority number first; at equal priority Drop before Accept."""
    return sorted(rules, key=lambda r: (r.priority, 0 if r.policy == "Drop" else 1))


def egress_verdict(rules: list[Rule], ip: str, port: int, default_allow: bool) -> tuple[bool, Rule | None]:
    """The first egress rule (in evaluation order) matching TCP ``ip:port`` decides; else the default."""
    addr = ipaddress.ip_address(ip)
    for rule in evaluation_order([r for r in rules if r.direction == "egress"]):
        if rule.covers("TCP", port) and addr in rule.network:
            return rule.policy == "Accept", rule
    return default_allow, None


def ingress_admits_block(rules: list[Rule], block: ipaddress.IPv4Network, port: int) -> tuple[bool, Rule | None]:
    """Whether ingress rules admit TCP ``port`` from every address of ``block``.

    A Drop touching any part of the block before a covering Accept denies; an Accept of only part
    of the block is not enough; no covering Accept at all denies (inbound is denied by default).
    """
    for rule in evaluation_order([r for r in rules if r.direction == "ingress"]):
        if not rule.covers("TCP", port) or not rule.network.overlaps(block):
            continue
        if rule.policy == "Drop":
            return False, rule
        if rule.network.supernet_of(block):
            return True, rule
    return False, None
