"""Whether the registry's builders reach a host: the network path a CR build needs, from the ECS state.

Used by the CR build simulation (``world.ecs.reaches``) when a build starts. The hops, in the order
they are checked (the first broken one is the reason the build gives):

1. an ENI the build service account may attach (a Granted ``InstanceAttach``) that is ``InUse``;
2. the egress of that ENI's security groups admits GitLab's IP and port;
3. GitLab's side: an ECS instance with that IP is ``Running`` and its groups admit
   ``100.104.0.0/16`` on the port; an address outside every VPC's CIDRs is in a data center, reached
   through the VBR whose route table sends it to a physical connection: that VBR must be ``active``
   and route ``100.104.0.0/16`` back towards the VPC (not to the data center), or the data center's
   answers never reach the builders.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from ..vpc.models import VpcBackend
from .rules import REVERSE_ACCESS, egress_verdict, ingress_admits_block


class _World(Protocol):
    vpc: VpcBackend


class EcsState(Protocol):
    """What reachability reads of the ECS backend (:class:`.models.EcsBackend`, which imports this module)."""

    @property
    def world(self) -> _World: ...

    groups: dict[str, Any]  # SecurityGroup by id
    instances: dict[str, Any]  # Instance by id
    enis: dict[str, Any]  # NetworkInterface by id
    permissions: dict[str, Any]  # EniPermission by id

    def status(self, eni: Any) -> str: ...

    def _purge(self) -> None: ...


def reaches(ecs: EcsState, account_id: int, ip: str, port: int) -> tuple[bool, str]:
    """Whether builders of ``account_id`` reach ``ip:port`` over TCP (used by the CR build simulation).

    True when an ENI the account may attach is ``InUse``, its security groups' egress admits
    ``ip:port``, and (if ``ip`` is an ECS instance here) that instance's groups admit
    ``100.104.0.0/16`` on ``port``. Otherwise ``(False, reason)``.
    """
    account_id = int(account_id)
    ecs._purge()
    granted = {p.eni_id for p in ecs.permissions.values() if p.account_id == account_id and p.state == "Granted"}
    enis = [n for n in ecs.enis.values() if n.eni_id in granted]
    if not enis:
        return False, (
            f"no network interface grants InstanceAttach to account {account_id}: the build link "
            f"(security group + ENI) is missing"
        )
    in_use = [n for n in enis if ecs.status(n) == "InUse"]
    if not in_use:
        states = ", ".join(f"{n.eni_id} is {ecs.status(n)}" for n in enis)
        return False, f"no build network interface is InUse ({states})"
    reasons = []
    for eni in in_use:
        ok, why = _egress(ecs, eni, ip, port)
        if ok:
            ok, why = _ingress(ecs, ip, port)
        if ok:
            ok, why = _return_route(ecs, ip)
        if ok:
            return True, ""
        reasons.append(why)
    return False, "; ".join(dict.fromkeys(reasons))


def _egress(ecs: EcsState, eni: Any, ip: str, port: int) -> tuple[bool, str]:
    groups = [ecs.groups[g] for g in eni.security_group_ids if g in ecs.groups]
    owner = {id(r): g.group_id for g in groups for r in g.rules}
    rules = [r for g in groups for r in g.rules]
    default_allow = all(g.group_type == "normal" for g in groups)
    ok, rule = egress_verdict(rules, ip, port, default_allow)
    if ok:
        return True, ""
    if rule is not None:
        return False, f"egress to {ip}:{port} is dropped by {rule.rule_id} in {owner[id(rule)]}"
    names = ", ".join(g.group_id for g in groups)
    return False, f"no egress rule of enterprise group(s) {names} admits {ip}:{port} (they deny by default)"


def _ingress(ecs: EcsState, ip: str, port: int) -> tuple[bool, str]:
    target = next((i for i in ecs.instances.values() if i.private_ip == ip), None)
    if target is None:
        return True, ""
    if target.status != "Running":
        return False, f"ECS instance {target.instance_id} ({ip}) is {target.status}, not Running"
    groups = [ecs.groups[g] for g in target.security_group_ids if g in ecs.groups]
    owner = {id(r): g.group_id for g in groups for r in g.rules}
    ok, rule = ingress_admits_block([r for g in groups for r in g.rules], REVERSE_ACCESS, port)
    if ok:
        return True, ""
    names = ", ".join(g.group_id for g in groups)
    if rule is not None:
        return False, (
            f"ingress from {REVERSE_ACCESS} to {ip}:{port} is dropped by {rule.rule_id} in {owner[id(rule)]}"
        )
    return False, (
        f"no ingress rule of {names} (instance {target.instance_id}) admits {REVERSE_ACCESS} on "
        f"TCP {port}: add an Accept rule for it"
    )


def _return_route(ecs: EcsState, ip: str) -> tuple[bool, str]:
    """A GitLab in a data center: the VBR that leads to it must route the builders' block back to the VPC."""
    vpc = ecs.world.vpc
    address = ipaddress.ip_address(ip)
    for v in vpc.vpcs.values():
        if any(address in ipaddress.ip_network(c) for c in [v.cidr, *v.secondary_cidrs] if c):
            return True, ""  # inside a VPC: no VBR on the path
    for vbr in vpc.vbrs.values():
        out = vpc.route_covering(vbr.route_table_id, f"{ip}/32")
        if out is None or not any(h.get("type") == "PhysicalConnection" for h in out.next_hops):
            continue
        if str(vbr.status).lower() != "active":
            return False, f"VBR {vbr.vbr_id} towards the data center of {ip} is {vbr.status}, not active"
        back = vpc.route_covering(vbr.route_table_id, str(REVERSE_ACCESS))
        if back is None:
            return False, (
                f"VBR {vbr.vbr_id} (route table {vbr.route_table_id}) has no route for {REVERSE_ACCESS} "
                f"back to the VPC: the data center's answers to the builders are lost"
            )
        if any(h.get("type") == "PhysicalConnection" for h in back.next_hops):
            return False, (
                f"VBR {vbr.vbr_id} routes {REVERSE_ACCESS} ({back.route_entry_id}) to the data center, "
                f"not back to the VPC"
            )
        return True, ""
    return True, ""  # an address no VBR leads to: not modelled
