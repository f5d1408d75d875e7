"""State and rules of the VPC emulation (no HTTP here).

Other backends use :meth:`VpcBackend.vpc`, :meth:`VpcBackend.vswitch`, :meth:`VpcBackend.allocate_ip`
and :meth:`VpcBackend.release_ip` (ECS places ENIs in vSwitches).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World


@dataclass
class VSwitch:
    vswitch_id: str
    vpc_id: str
    zone_id: str
    cidr: str
    name: str = ""
    available_ips: int = 250
    status: str = "Available"
    used_ips: set[str] = field(default_factory=set)


@dataclass
class Vpc:
    vpc_id: str
    cidr: str
    name: str = ""
    secondary_cidrs: list[str] = field(default_factory=list)
    status: str = "Available"
    vswitch_ids: list[str] = field(default_factory=list)


class VpcBackend:
    def __init__(self, world: "World") -> None:
        self.world = world
        self.vpcs: dict[str, Vpc] = {}
        self.vswitches: dict[str, VSwitch] = {}

    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``vpc:`` section."""
        for v in section.get("vpcs", []):
            vpc = Vpc(v["vpc_id"], v["cidr"], v.get("name", ""), list(v.get("secondary_cidrs", [])))
            self.vpcs[vpc.vpc_id] = vpc
            for s in v.get("vswitches", []):
                vsw = VSwitch(s["vswitch_id"], vpc.vpc_id, s["zone_id"], s["cidr"], s.get("name", ""),
                              int(s.get("available_ips", 250)))
                self.vswitches[vsw.vswitch_id] = vsw
                vpc.vswitch_ids.append(vsw.vswitch_id)

    def vpc(self, vpc_id: str) -> Vpc | None:
        return self.vpcs.get(vpc_id)

    def vswitch(self, vswitch_id: str) -> VSwitch | None:
        return self.vswitches.get(vswitch_id)

    def allocate_ip(self, vswitch_id: str) -> str | None:
        """Take a free address in the vSwitch (``None`` when it has none left)."""
        vsw = self.vswitches[vswitch_id]
        if vsw.available_ips <= 0:
            return None
        net = ipaddress.ip_network(vsw.cidr)
        for host in list(net.hosts())[3:]:  # the first addresses are reserved by the VPC
            ip = str(host)
            if ip not in vsw.used_ips:
                vsw.used_ips.add(ip)
                vsw.available_ips -= 1
                return ip
        return None

    def release_ip(self, vswitch_id: str, ip: str) -> None:
        vsw = self.vswitches.get(vswitch_id)
        if vsw and ip in vsw.used_ips:
            vsw.used_ips.discard(ip)
            vsw.available_ips += 1
