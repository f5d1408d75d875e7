"""State and rules of the VPC emulation (no HTTP here).

Other backends use :meth:`VpcBackend.vpc`, :meth:`VpcBackend.vswitch`, :meth:`VpcBackend.allocate_ip`
and :meth:`VpcBackend.release_ip` (ECS places ENIs in vSwitches), and may ask
:meth:`VpcBackend.route_covering` whether a route table (e.g. a VBR's) routes a block.

Every VPC has one system route table of its vRouter (ids derived from the VPC id:
``vpc-X`` -> vRouter ``vrt-X``, table ``vtb-X`` unless the scenario names it) holding a System
route per vSwitch CIDR plus the scenario's custom routes. Every VBR has its own route table.

Assumptions:
- CreateRouteEntry refuses destinations that are or lie inside 100.64.0.0/10 on a vRouter table
  (``InvalidDestinationCidrBlock``), as the SDK documents ("cannot point to or be contained by
  100.64.0.0/10"); a wider destination such as 0.0.0.0/0 is accepted.
- VBR tables (the reference lists the same 100.64.0.0/10 limit for VBRs, while the ACR
  procedure requires a VBR return route for 100.104.0.0/16): the limit applies to routes that
  point at the data center; a destination inside 100.64.0.0/10 is accepted only with
  ``NextHopType=RouterInterface`` (the route back towards the VPC, i.e. the ACR return route),
  and refused otherwise with ``InvalidCidrBlock`` (the error table's "100.64.0.0/10 is a cloud
  service address, you cannot add this CIDR block to point to the IDC").
- A new custom route is ``Creating`` for ``route_create_seconds`` sandbox seconds (default 2),
  then ``Available``; another CreateRouteEntry on the same table meanwhile answers
  ``IncorrectRouteEntryStatus``. A repeated ClientToken on the same table returns the first
  route's id without creating anything.
- Scenario routes are seeded as they are (no 100.64.0.0/10 check): they model routes made by
  support tickets or the console.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.world_view import ServiceWorld
from . import errors

SEEDED_TIME = "2024-03-01T08:00:00Z"
CLOUD_SERVICE_BLOCK = ipaddress.ip_network("100.64.0.0/10")
MAX_CUSTOM_ROUTES = 200


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
    description: str = ""
    is_default: bool = False


@dataclass
class Vpc:
    vpc_id: str
    cidr: str
    name: str = ""
    secondary_cidrs: list[str] = field(default_factory=list)
    status: str = "Available"
    vswitch_ids: list[str] = field(default_factory=list)
    user_cidrs: list[str] = field(default_factory=list)
    description: str = ""
    is_default: bool = False
    vrouter_id: str = ""
    route_table_id: str = ""


@dataclass
class RouteEntry:
    route_entry_id: str
    route_table_id: str
    destination: str
    next_hops: list[dict[str, Any]]  # {"type", "id", "weight"}
    type: str = "Custom"  # Custom | System | BGP | CEN | ECR
    name: str = ""
    description: str = ""
    created_at: float | None = None  # sandbox seconds; None = seeded (already Available)
    client_token: str = ""
    gmt_modified: str = SEEDED_TIME[:16] + "Z"


@dataclass
class RouteTable:
    route_table_id: str
    router_id: str
    router_type: str  # VRouter | VBR
    vpc_id: str = ""
    table_type: str = "System"
    name: str = ""
    description: str = ""
    entries: list[RouteEntry] = field(default_factory=list)


@dataclass
class Vbr:
    vbr_id: str
    name: str
    status: str
    route_table_id: str
    physical_connection_id: str = ""
    access_point_id: str = ""
    vlan_id: int = 10
    vlan_interface_id: str = ""
    local_gateway_ip: str = ""
    peer_gateway_ip: str = ""
    peering_subnet_mask: str = "255.255.255.252"
    description: str = ""
    type: str = "pconnVBR"
    ecc_id: str = ""


def _derive(prefix: str, resource_id: str) -> str:
    return f"{prefix}-{resource_id.split('-', 1)[1]}"


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A destination as the API takes it: an address without a mask is a /32 (or /128)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise errors.InvalidCidrBlockMalformed(text) from None


class VpcBackend:
    def __init__(self, world: ServiceWorld) -> None:
        self.world = world
        self.vpcs: dict[str, Vpc] = {}
        self.vswitches: dict[str, VSwitch] = {}
        self.route_tables: dict[str, RouteTable] = {}
        self.vbrs: dict[str, Vbr] = {}
        self.route_create_seconds = 2.0

    # -- seeding ------------------------------------------------------------------------------
    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``vpc:`` section."""
        self.route_create_seconds = float(section.get("route_create_seconds", 2))
        for v in section.get("vpcs", []):
            vpc = Vpc(
                v["vpc_id"],
                v["cidr"],
                v.get("name", ""),
                list(v.get("secondary_cidrs", [])),
                user_cidrs=list(v.get("user_cidrs", [])),
                description=v.get("description", ""),
                is_default=bool(v.get("is_default", False)),
            )
            vpc.vrouter_id = v.get("vrouter_id") or _derive("vrt", vpc.vpc_id)
            vpc.route_table_id = v.get("route_table_id") or _derive("vtb", vpc.vpc_id)
            self.vpcs[vpc.vpc_id] = vpc
            table = RouteTable(vpc.route_table_id, vpc.vrouter_id, "VRouter", vpc.vpc_id)
            self.route_tables[table.route_table_id] = table
            for s in v.get("vswitches", []):
                vsw = VSwitch(
                    s["vswitch_id"],
                    vpc.vpc_id,
                    s["zone_id"],
                    s["cidr"],
                    s.get("name", ""),
                    int(s.get("available_ips", 250)),
                    status=s.get("status", "Available"),
                    description=s.get("description", ""),
                )
                self.vswitches[vsw.vswitch_id] = vsw
                vpc.vswitch_ids.append(vsw.vswitch_id)
                table.entries.append(
                    RouteEntry(
                        _derive("rte", vsw.vswitch_id),
                        table.route_table_id,
                        vsw.cidr,
                        [{"type": "local", "id": ""}],
                        type="System",
                    )
                )
            self._seed_routes(table, v.get("routes", []))
        for b in section.get("vbrs", []):
            vbr = Vbr(
                b["vbr_id"],
                b.get("name", ""),
                b.get("status", "active"),
                b.get("route_table_id") or _derive("vtb", b["vbr_id"]),
                physical_connection_id=b.get("physical_connection_id", ""),
                access_point_id=b.get("access_point_id", ""),
                vlan_id=int(b.get("vlan_id", 10)),
                vlan_interface_id=b.get("vlan_interface_id") or _derive("ri", b["vbr_id"]),
                local_gateway_ip=b.get("local_gateway_ip", ""),
                peer_gateway_ip=b.get("peer_gateway_ip", ""),
                description=b.get("description", ""),
            )
            self.vbrs[vbr.vbr_id] = vbr
            table = RouteTable(vbr.route_table_id, vbr.vbr_id, "VBR")
            self.route_tables[table.route_table_id] = table
            self._seed_routes(table, b.get("routes", []))

    def _seed_routes(self, table: RouteTable, routes: list[dict[str, Any]]) -> None:
        for i, r in enumerate(routes, 1):
            entry_id = r.get("route_entry_id") or f"{_derive('rte', table.route_table_id)}{i:02d}"
            table.entries.append(
                RouteEntry(
                    entry_id,
                    table.route_table_id,
                    str(parse_cidr(r["destination"])),
                    [{"type": r.get("next_hop_type", "Instance"), "id": r.get("next_hop_id", ""), "weight": None}],
                    type=r.get("type", "Custom"),
                    name=r.get("name", ""),
                    description=r.get("description", ""),
                )
            )

    # -- lookups used by other backends ---------------------------------------------------------
    def vpc(self, vpc_id: str) -> Vpc | None:
        return self.vpcs.get(vpc_id)

    def vswitch(self, vswitch_id: str) -> VSwitch | None:
        return self.vswitches.get(vswitch_id)

    def vbr(self, vbr_id: str) -> Vbr | None:
        return self.vbrs.get(vbr_id)

    def route_table(self, route_table_id: str) -> RouteTable | None:
        return self.route_tables.get(route_table_id)

    def route_covering(self, route_table_id: str, cidr: str) -> RouteEntry | None:
        """The Available route of a table whose destination contains ``cidr`` (longest prefix), if any."""
        table = self.route_tables.get(route_table_id)
        if table is None:
            return None
        want = ipaddress.ip_network(cidr, strict=False)
        best: RouteEntry | None = None
        for entry in table.entries:
            dest = ipaddress.ip_network(entry.destination)
            if _within(want, dest) and self.route_status(entry) == "Available":
                if best is None or dest.prefixlen > ipaddress.ip_network(best.destination).prefixlen:
                    best = entry
        return best

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

    # -- rules ------------------------------------------------------------------------------------
    def route_status(self, entry: RouteEntry) -> str:
        """``Creating`` until ``route_create_seconds`` have passed since creation, then ``Available``."""
        if entry.created_at is None or self.world.clock.now() - entry.created_at >= self.route_create_seconds:
            return "Available"
        return "Creating"

    def in_region(self, region_id: str | None) -> bool:
        """Whether a request's ``RegionId`` (when given) is the sandbox's region."""
        return region_id is None or region_id == self.world.region

    def create_route_entry(
        self,
        route_table_id: str,
        destination: str,
        next_hops: list[dict[str, Any]],
        *,
        name: str = "",
        description: str = "",
        client_token: str = "",
        dry_run: bool = False,
        ecmp: bool = False,
    ) -> RouteEntry:
        """Add a custom route, applying the documented limits (see the module docstring).

        Raises:
            RpcError: one of the :mod:`.errors` codes.
        """
        table = self.route_tables.get(route_table_id)
        if table is None:
            raise errors.InvalidRouteTableIdNotFound(route_table_id)
        if client_token:
            for entry in table.entries:
                if entry.client_token == client_token:
                    return entry
        dest = parse_cidr(destination)
        if table.router_type == "VBR":
            self._check_vbr_route(table, dest, next_hops, ecmp)
        else:
            self._check_vrouter_route(table, dest)
        if any(ipaddress.ip_network(e.destination) == dest for e in table.entries):
            raise errors.InvalidCidrBlockDuplicate(str(dest))
        if sum(1 for e in table.entries if e.type == "Custom") >= MAX_CUSTOM_ROUTES:
            raise errors.QuotaExceeded()
        if any(self.route_status(e) != "Available" for e in table.entries):
            raise errors.IncorrectRouteEntryStatus()
        if dry_run:
            raise errors.DryRunOperation()
        now = datetime.fromtimestamp(self.world.clock.epoch_ms() / 1000, UTC)
        entry = RouteEntry(
            self.world.new_id("rte"),
            table.route_table_id,
            str(dest),
            next_hops,
            name=name,
            description=description,
            created_at=self.world.clock.now(),
            client_token=client_token,
            gmt_modified=now.strftime("%Y-%m-%dT%H:%MZ"),
        )
        table.entries.append(entry)
        return entry

    def _check_vrouter_route(self, table: RouteTable, dest: Any) -> None:
        if dest.version == 4 and dest.subnet_of(CLOUD_SERVICE_BLOCK):
            raise errors.InvalidDestinationCidrBlock(str(dest))
        vpc = self.vpcs.get(table.vpc_id)
        for vsw_id in vpc.vswitch_ids if vpc else []:
            cidr = ipaddress.ip_network(self.vswitches[vsw_id].cidr)
            if dest.version == cidr.version and dest.subnet_of(cidr):
                raise errors.InvalidCidrBlock(
                    f"The destination {dest} lies inside vSwitch {vsw_id}'s CIDR block {cidr}."
                )

    def _check_vbr_route(self, table: RouteTable, dest: Any, next_hops: list[dict[str, Any]], ecmp: bool) -> None:
        if ecmp:
            raise errors.InvalidRouterType()
        vbr = self.vbrs[table.router_id]
        if vbr.status.lower() != "active":
            raise errors.InvalidVbrStatus()
        hop_type = next_hops[0]["type"] if next_hops else ""
        if dest.version == 4 and dest.subnet_of(CLOUD_SERVICE_BLOCK) and hop_type != "RouterInterface":
            raise errors.InvalidCidrBlock(
                "Because 100.64.0.0/10 is a cloud service address, you cannot add this "
                "CIDR block to point to the IDC under the cloud."
            )


def _within(
    inner: ipaddress.IPv4Network | ipaddress.IPv6Network, outer: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> bool:
    """``inner`` lies inside ``outer``; blocks of different IP versions never do."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False
