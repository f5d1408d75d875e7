"""State and rules of the ECS emulation (no HTTP here).

Security groups with their rules, ECS instances (seeded), elastic network interfaces (ENIs) and
their InstanceAttach permissions, and the reachability question the CR build simulation asks.

ENI lifecycle, derived from the clock: when an InstanceAttach permission is granted to the
registry's build service account (``cr.build_service_account_id``), the registry attaches the ENI:
``Attaching`` from that moment, ``InUse`` after ``ecs.eni_attach_seconds`` sandbox seconds (an ENI
in a zone listed in ``ecs.eni_attach_fail_zones`` falls back to ``Available`` instead). Deleting the
permission makes it ``Detaching``, then ``Available`` after the same time. ``DeleteNetworkInterface``
makes it ``Deleting`` for ``ecs.eni_delete_seconds`` (1) sandbox seconds, during which it is still
listed and still uses its security groups; then it is gone (not found) and its IP is free.

Assumptions:
- Rules address CIDR blocks only; SourceGroupId/DestGroupId, prefix lists and IPv6 rules answer
  ``UnsupportedParameter``. A bare IP is stored as given, a CIDR canonically (``10.0.0.0/8``).
- Rule identity for "already exists" (a no-op, as ECS answers) and for revoking by Permissions.N is
  (direction, protocol, port range, CIDR, policy, priority); the description is not part of it.
- A rule id or permission id that names nothing answers ``...Id.NotFound`` (404); revoking by
  Permissions.N that match no rule succeeds without change.
- A ClientToken whose resource was deleted since is forgotten (a new resource is created), unless the
  scenario sets ``ecs.remember_deleted_tokens: true``: then a create repeating the token answers the
  deleted resource's id (and, for an ENI, its create-time description), as an ECS that keeps tokens
  longer than their resources would. Either way a token whose ENI is still ``Deleting`` answers that ENI.
- Deleting an InstanceAttach permission removes it at once (no Revoking/Revoked states), whatever
  ``Force`` says; a second grant to the same account answers the existing permission.
- Resources live in the world's one region; another RegionId sees none of them.
- At most 200 rules per group (``AuthorizationLimitExceed``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from ..core.errors import InvalidParameter, MissingParameter
from ..core.world_view import ServiceWorld
from ..vpc.models import VpcBackend
from . import errors as e
from . import reach
from .rules import RULE_LIMIT, Rule, normalize_permission

DELETED = "Deleted"  # the internal end of an ENI's Deleting phase: purged, then not found


class EcsWorld(ServiceWorld, Protocol):
    """What the ECS backend uses of the world: the VPC backend (vSwitches and their addresses)."""

    vpc: VpcBackend


_macs = itertools.count(0x100)


# -- state ----------------------------------------------------------------------------------------
@dataclass
class SecurityGroup:
    group_id: str
    vpc_id: str
    name: str = ""
    description: str = ""
    group_type: str = "normal"  # normal | enterprise
    inner_access_policy: str = "Accept"
    service_managed: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    creation_time: str = ""


@dataclass
class Instance:
    instance_id: str
    name: str
    status: str
    zone_id: str
    vpc_id: str
    vswitch_id: str
    private_ip: str
    security_group_ids: list[str]
    instance_type: str = "ecs.g7.large"
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: str = ""
    primary_eni_id: str = ""


@dataclass
class NetworkInterface:
    eni_id: str
    vswitch_id: str
    vpc_id: str
    zone_id: str
    private_ip: str
    security_group_ids: list[str]
    name: str = ""
    description: str = ""
    eni_type: str = "Secondary"
    instance_id: str = ""
    service_managed: bool = False
    service_id: int = 0  # the owning cloud service's id (ServiceID), for service-managed ENIs
    tags: dict[str, str] = field(default_factory=dict)
    mac: str = ""
    creation_time: str = ""
    base_status: str = "Available"
    phase: tuple[str, str, float] | None = None  # (status while changing, status after, start time)


@dataclass
class EniPermission:
    permission_id: str
    eni_id: str
    account_id: int
    permission: str = "InstanceAttach"
    state: str = "Granted"
    service_name: str = "Alibaba Cloud"


def _tags(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(t["key"]): str(t.get("value", "")) for t in value or []}


def check_tags(tags: list[tuple[str, str]]) -> dict[str, str]:
    """Tag.N pairs as a dict, refusing keys ECS refuses."""
    for key, _ in tags:
        if not key or key.startswith(("aliyun", "acs:")):
            raise e.InvalidTagKeyMalformed(key)
    return dict(tags)


def has_tags(tags: dict[str, str], wanted: list[tuple[str, str]]) -> bool:
    """All ``wanted`` pairs present (an empty wanted value matches any value of the key)."""
    return all(k in tags and (v == "" or tags[k] == v) for k, v in wanted)


class EcsBackend:
    def __init__(self, world: EcsWorld) -> None:
        self.world = world
        self.groups: dict[str, SecurityGroup] = {}
        self.instances: dict[str, Instance] = {}
        self.enis: dict[str, NetworkInterface] = {}
        self.permissions: dict[str, EniPermission] = {}
        self.attach_seconds = 2.0
        self.delete_seconds = 1.0  # an ENI stays Deleting this long after DeleteNetworkInterface
        self.attach_fail_zones: set[str] = set()
        self._tokens: dict[tuple[str, str], tuple[tuple[Any, ...], str]] = {}
        self.remember_deleted_tokens = False  # see the module's Assumptions
        self._deleted: dict[str, Any] = {}  # id -> the resource as it was, for remembered tokens

    # -- seeding ------------------------------------------------------------------------------
    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``ecs:`` section."""
        self.attach_seconds = float(section.get("eni_attach_seconds", 2))
        self.delete_seconds = float(section.get("eni_delete_seconds", 1))
        self.attach_fail_zones = set(section.get("eni_attach_fail_zones") or [])
        self.remember_deleted_tokens = bool(section.get("remember_deleted_tokens", False))
        for g in section.get("security_groups", []):
            group = SecurityGroup(
                g["security_group_id"],
                g["vpc_id"],
                g.get("name", ""),
                g.get("description", ""),
                g.get("type", "normal"),
                g.get("inner_access_policy", "Accept"),
                bool(g.get("service_managed", False)),
                _tags(g.get("tags")),
                creation_time=self.timestamp(),
            )
            for r in g.get("rules", []):
                perm = {"".join(p.capitalize() for p in k.split("_")): v for k, v in r.items() if k != "direction"}
                group.rules.append(self._new_rule(normalize_permission(r.get("direction", "ingress"), perm)))
            self.groups[group.group_id] = group
        for i in section.get("instances", []):
            inst = Instance(
                i["instance_id"],
                i.get("name", ""),
                i.get("status", "Running"),
                i["zone_id"],
                i["vpc_id"],
                i["vswitch_id"],
                i["private_ip"],
                list(i.get("security_group_ids", [])),
                i.get("instance_type", "ecs.g7.large"),
                _tags(i.get("tags")),
                self.timestamp(),
            )
            eni = NetworkInterface(
                i.get("primary_eni_id") or self.world.new_id("eni"),
                inst.vswitch_id,
                inst.vpc_id,
                inst.zone_id,
                inst.private_ip,
                list(inst.security_group_ids),
                eni_type="Primary",
                instance_id=inst.instance_id,
                mac=self._mac(),
                creation_time=inst.creation_time,
                base_status="InUse",
            )
            inst.primary_eni_id = eni.eni_id
            self.instances[inst.instance_id] = inst
            self.enis[eni.eni_id] = eni
            vsw = self.world.vpc.vswitch(inst.vswitch_id)
            if vsw is not None:
                vsw.used_ips.add(inst.private_ip)  # never hand the instance's address to an ENI
        for n in section.get("network_interfaces", []):
            eni = NetworkInterface(
                n["network_interface_id"],
                n["vswitch_id"],
                "",
                "",
                "",
                list(n.get("security_group_ids", [])),
                n.get("name", ""),
                n.get("description", ""),
                service_managed=bool(n.get("service_managed", False)),
                tags=_tags(n.get("tags")),
                mac=self._mac(),
                creation_time=self.timestamp(),
                base_status=n.get("status", "Available"),
            )
            vsw = self.world.vpc.vswitch(eni.vswitch_id)
            if vsw is None:
                raise ValueError(f"scenario ecs.network_interfaces: no vSwitch {eni.vswitch_id}")
            eni.vpc_id, eni.zone_id = vsw.vpc_id, vsw.zone_id
            eni.private_ip = n.get("private_ip") or self.world.vpc.allocate_ip(vsw.vswitch_id) or ""
            vsw.used_ips.add(eni.private_ip)
            self.enis[eni.eni_id] = eni
            for account in n.get("permissions", []):
                pid = self.world.new_id("eni-perm")
                self.permissions[pid] = EniPermission(pid, eni.eni_id, int(account))

    # -- helpers ------------------------------------------------------------------------------
    def timestamp(self) -> str:
        when = datetime.fromtimestamp(self.world.clock.epoch_ms() / 1000, UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def _mac() -> str:
        n = next(_macs)
        return f"00:16:3e:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"

    def _new_rule(self, fields: dict[str, Any]) -> Rule:
        return Rule(self.world.new_id("sgr"), create_time=self.timestamp(), **fields)

    def in_region(self, region: str | None) -> bool:
        return region == self.world.region

    def _idempotent(self, action: str, token: str | None, fingerprint: tuple[Any, ...], exists: Any) -> str | None:
        """The resource id an earlier call with this ClientToken made, if it still exists (or, with
        ``remember_deleted_tokens``, even when it was deleted since)."""
        if not token:
            return None
        seen = self._tokens.get((action, token))
        if seen is None or not (exists(seen[1]) or (self.remember_deleted_tokens and seen[1] in self._deleted)):
            return None
        if seen[0] != fingerprint:
            raise e.IdempotentParameterMismatch()
        return seen[1]

    @property
    def build_service_account(self) -> int | None:
        value = (self.world.scenario.get("cr") or {}).get("build_service_account_id")
        return int(value) if value is not None else None

    # -- security groups ----------------------------------------------------------------------
    def group(self, group_id: str, region: str | None) -> SecurityGroup:
        group = self.groups.get(group_id)
        if group is None or not self.in_region(region):
            raise e.InvalidSecurityGroupIdNotFound(group_id)
        return group

    def create_security_group(
        self,
        region: str | None,
        vpc_id: str | None,
        name: str,
        description: str,
        group_type: str,
        tags: dict[str, str],
        client_token: str | None,
    ) -> SecurityGroup:
        if not vpc_id:
            raise MissingParameter("VpcId")  # classic-network groups are not emulated
        if self.world.vpc.vpc(vpc_id) is None or not self.in_region(region):
            raise e.InvalidVpcIdNotFound(vpc_id)
        if group_type not in ("normal", "enterprise"):
            raise e.InvalidSecurityGroupTypeMalformed(group_type)
        fingerprint = (vpc_id, name, description, group_type, tuple(sorted(tags.items())))
        known = self._idempotent("CreateSecurityGroup", client_token, fingerprint, self.groups.__contains__)
        if known:
            return self.groups.get(known) or self._deleted[known]
        group = SecurityGroup(
            self.world.new_id("sg"),
            vpc_id,
            name,
            description,
            group_type,
            "Drop" if group_type == "enterprise" else "Accept",
            tags=dict(tags),
            creation_time=self.timestamp(),
        )
        self.groups[group.group_id] = group
        if client_token:
            self._tokens[("CreateSecurityGroup", client_token)] = (fingerprint, group.group_id)
        return group

    def find_security_groups(
        self,
        region: str | None,
        *,
        vpc_id: str | None = None,
        ids: list[str] | None = None,
        name: str | None = None,
        group_type: str | None = None,
        tags: list[tuple[str, str]] | None = None,
        service_managed: bool | None = None,
    ) -> list[SecurityGroup]:
        if not self.in_region(region):
            return []
        return [
            g
            for g in self.groups.values()
            if (vpc_id is None or g.vpc_id == vpc_id)
            and (not ids or g.group_id in ids)
            and (name is None or g.name == name)
            and (group_type is None or g.group_type == group_type)
            and has_tags(g.tags, tags or [])
            and (service_managed is None or g.service_managed == service_managed)
        ]

    def modify_policy(self, region: str | None, group_id: str, policy: str) -> None:
        group = self.group(group_id, region)
        value = {"accept": "Accept", "drop": "Drop"}.get(policy.strip().lower())
        if value is None:
            raise e.InvalidInnerAccessPolicy(policy)
        group.inner_access_policy = value

    def authorize(self, region: str | None, group_id: str, direction: str, perms: list[dict[str, Any]]) -> list[Rule]:
        """Add rules (all validated first); identical rules already present are skipped."""
        group = self.group(group_id, region)
        if not perms:
            raise MissingParameter("Permissions")
        fields = [normalize_permission(direction, p) for p in perms]
        present = {r.identity() for r in group.rules}
        added: list[Rule] = []
        for f in fields:
            rule = Rule("", **f)
            if rule.identity() in present:
                continue
            if len(group.rules) + len(added) >= RULE_LIMIT:
                raise e.AuthorizationLimitExceed()
            present.add(rule.identity())
            added.append(self._new_rule(f))
        group.rules.extend(added)
        return added

    def revoke(
        self, region: str | None, group_id: str, direction: str, rule_ids: list[str], perms: list[dict[str, Any]]
    ) -> list[Rule]:
        """Remove rules named by id (must exist, in this direction) or matching Permissions.N."""
        group = self.group(group_id, region)
        if not rule_ids and not perms:
            raise MissingParameter("SecurityGroupRuleId.N")
        by_id = {r.rule_id: r for r in group.rules if r.direction == direction}
        for rid in rule_ids:
            if rid not in by_id:
                raise e.InvalidSecurityGroupRuleIdNotFound(rid)
        wanted = {Rule("", **normalize_permission(direction, p)).identity() for p in perms}
        gone = [
            r for r in group.rules if r.rule_id in rule_ids or (r.direction == direction and r.identity() in wanted)
        ]
        group.rules = [r for r in group.rules if r not in gone]
        return gone

    def group_users(self, group_id: str) -> list[str]:
        self._purge()  # a Deleting ENI still uses its groups (DependencyViolation)
        users = [i.instance_id for i in self.instances.values() if group_id in i.security_group_ids]
        users += [n.eni_id for n in self.enis.values() if n.eni_type != "Primary" and group_id in n.security_group_ids]
        return users

    def delete_security_group(self, region: str | None, group_id: str) -> None:
        self.group(group_id, region)
        users = self.group_users(group_id)
        if users:
            raise e.DependencyViolation(group_id, users)
        self._bury(self.groups.pop(group_id))

    # -- instances ----------------------------------------------------------------------------
    def find_instances(
        self,
        region: str | None,
        *,
        ids: list[str] | None = None,
        ips: list[str] | None = None,
        vpc_id: str | None = None,
        vswitch_id: str | None = None,
        group_id: str | None = None,
        zone_id: str | None = None,
        status: str | None = None,
        name: str | None = None,
        tags: list[tuple[str, str]] | None = None,
    ) -> list[Instance]:
        if not self.in_region(region):
            return []
        pattern = re.compile(re.escape(name).replace(r"\*", ".*") + r"\Z") if name else None
        return [
            i
            for i in self.instances.values()
            if (not ids or i.instance_id in ids)
            and (not ips or i.private_ip in ips)
            and (vpc_id is None or i.vpc_id == vpc_id)
            and (vswitch_id is None or i.vswitch_id == vswitch_id)
            and (group_id is None or group_id in i.security_group_ids)
            and (zone_id is None or i.zone_id == zone_id)
            and (status is None or i.status == status)
            and (pattern is None or pattern.match(i.name))
            and has_tags(i.tags, tags or [])
        ]

    # -- network interfaces -------------------------------------------------------------------
    def status(self, eni: NetworkInterface) -> str:
        """The ENI's status now, derived from its attach/detach phase and the clock."""
        if eni.phase is None:
            return eni.base_status
        during, after, start = eni.phase
        span = self.delete_seconds if after == DELETED else self.attach_seconds
        return during if self.world.clock.now() - start < span else after

    def _purge(self) -> None:
        """Forget the ENIs whose deletion has finished (``Deleting`` -> not found)."""
        for eni in [n for n in self.enis.values() if n.phase and n.phase[1] == DELETED and self.status(n) == DELETED]:
            del self.enis[eni.eni_id]
            self.world.vpc.release_ip(eni.vswitch_id, eni.private_ip)
            self._bury(replace(eni, phase=None, base_status="Available"))  # as its create call described it

    def _bury(self, resource: Any) -> None:
        """Keep a deleted resource for the ClientTokens that remember it (``remember_deleted_tokens``)."""
        if self.remember_deleted_tokens:
            self._deleted[getattr(resource, "group_id", None) or resource.eni_id] = resource

    def eni(self, eni_id: str, region: str | None) -> NetworkInterface:
        self._purge()
        eni = self.enis.get(eni_id)
        if eni is None or not self.in_region(region):
            raise e.InvalidEniIdNotFound(eni_id)
        return eni

    def _groups_for(self, region: str | None, vpc_id: str, group_ids: list[str]) -> list[str]:
        if not group_ids:
            raise MissingParameter("SecurityGroupId")
        if len(group_ids) > 10:
            raise InvalidParameter("SecurityGroupIds", "At most 10 security groups.")
        for gid in group_ids:
            group = self.group(gid, region)
            if group.vpc_id != vpc_id:
                raise e.InvalidOperationVpcMismatch(f"{gid} is in {group.vpc_id}, not {vpc_id}.")
        return list(dict.fromkeys(group_ids))

    def create_network_interface(
        self,
        region: str | None,
        vswitch_id: str,
        group_ids: list[str],
        name: str,
        description: str,
        tags: dict[str, str],
        client_token: str | None,
    ) -> NetworkInterface:
        vsw = self.world.vpc.vswitch(vswitch_id)
        if vsw is None or not self.in_region(region):
            raise e.InvalidVSwitchIdNotFound(vswitch_id)
        groups = self._groups_for(region, vsw.vpc_id, group_ids)
        fingerprint = (vswitch_id, tuple(groups), name, description, tuple(sorted(tags.items())))
        self._purge()  # an ENI whose deletion has finished is gone for its token too
        known = self._idempotent("CreateNetworkInterface", client_token, fingerprint, self.enis.__contains__)
        if known:
            return self.enis.get(known) or self._deleted[known]
        ip = self.world.vpc.allocate_ip(vswitch_id)
        if ip is None:
            raise e.InvalidVSwitchIdIpNotEnough(vswitch_id)
        eni = NetworkInterface(
            self.world.new_id("eni"),
            vswitch_id,
            vsw.vpc_id,
            vsw.zone_id,
            ip,
            groups,
            name,
            description,
            tags=dict(tags),
            mac=self._mac(),
            creation_time=self.timestamp(),
        )
        self.enis[eni.eni_id] = eni
        if client_token:
            self._tokens[("CreateNetworkInterface", client_token)] = (fingerprint, eni.eni_id)
        return eni

    def find_network_interfaces(
        self,
        region: str | None,
        *,
        ids: list[str] | None = None,
        vpc_id: str | None = None,
        vswitch_id: str | None = None,
        group_id: str | None = None,
        service_managed: bool | None = None,
        status: str | None = None,
        eni_type: str | None = None,
        tags: list[tuple[str, str]] | None = None,
        ips: list[str] | None = None,
        instance_id: str | None = None,
        name: str | None = None,
    ) -> list[NetworkInterface]:
        if not self.in_region(region):
            return []
        self._purge()
        return [
            n
            for n in self.enis.values()
            if (not ids or n.eni_id in ids)
            and (vpc_id is None or n.vpc_id == vpc_id)
            and (vswitch_id is None or n.vswitch_id == vswitch_id)
            and (group_id is None or group_id in n.security_group_ids)
            and (service_managed is None or n.service_managed == service_managed)
            and (status is None or self.status(n) == status)
            and (eni_type is None or n.eni_type == eni_type)
            and has_tags(n.tags, tags or [])
            and (not ips or n.private_ip in ips)
            and (instance_id is None or n.instance_id == instance_id)
            and (name is None or n.name == name)
        ]

    def modify_network_interface(
        self, region: str | None, eni_id: str, group_ids: list[str], name: str | None, description: str | None
    ) -> None:
        eni = self.eni(eni_id, region)
        if group_ids:
            eni.security_group_ids = self._groups_for(region, eni.vpc_id, group_ids)
        if name is not None:
            eni.name = name
        if description is not None:
            eni.description = description

    def delete_network_interface(self, region: str | None, eni_id: str) -> None:
        eni = self.eni(eni_id, region)
        status = self.status(eni)
        if status != "Available" or eni.eni_type == "Primary":
            raise e.InvalidEniState(eni_id, status)
        eni.phase = ("Deleting", DELETED, self.world.clock.now())  # gone after delete_seconds (see _purge)
        for pid in [p.permission_id for p in self.permissions.values() if p.eni_id == eni_id]:
            del self.permissions[pid]

    # -- InstanceAttach permissions -----------------------------------------------------------
    def create_permission(self, region: str | None, eni_id: str, account_id: int, permission: str) -> EniPermission:
        eni = self.eni(eni_id, region)
        if permission != "InstanceAttach":
            raise InvalidParameter("Permission", "Only InstanceAttach is supported.")
        for p in self.permissions.values():
            if p.eni_id == eni_id and p.account_id == account_id:
                return p
        perm = EniPermission(self.world.new_id("eni-perm"), eni_id, account_id)
        self.permissions[perm.permission_id] = perm
        if account_id == self.build_service_account and self.status(eni) in ("Available", "Detaching"):
            after = "Available" if eni.zone_id in self.attach_fail_zones else "InUse"
            eni.phase = ("Attaching", after, self.world.clock.now())
        return perm

    def find_permissions(self, region: str | None, eni_id: str | None, ids: list[str]) -> list[EniPermission]:
        if not eni_id and not ids:
            raise MissingParameter("NetworkInterfaceId")
        if not self.in_region(region):
            return []
        return [
            p
            for p in self.permissions.values()
            if (not eni_id or p.eni_id == eni_id) and (not ids or p.permission_id in ids)
        ]

    def delete_permission(self, region: str | None, permission_id: str) -> None:
        perm = self.permissions.get(permission_id)
        if perm is None or not self.in_region(region):
            raise e.InvalidNetworkInterfacePermissionIdNotFound(permission_id)
        del self.permissions[permission_id]
        eni = self.enis.get(perm.eni_id)
        if (
            eni is not None
            and perm.account_id == self.build_service_account
            and self.status(eni) in ("Attaching", "InUse")
        ):
            eni.phase = ("Detaching", "Available", self.world.clock.now())

    # -- tags ---------------------------------------------------------------------------------
    def taggable(self, resource_type: str) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {"securitygroup": self.groups, "eni": self.enis, "instance": self.instances}
        table = tables.get(resource_type)
        if table is None:
            raise e.InvalidResourceTypeNotFound(resource_type)
        return table

    def tag_resources(self, region: str | None, resource_type: str, ids: list[str], tags: dict[str, str]) -> None:
        table = self.taggable(resource_type)
        for rid in ids:
            if rid not in table or not self.in_region(region):
                raise e.InvalidResourceIdNotFound(rid)
        for rid in ids:
            table[rid].tags.update(tags)

    # -- reachability (used by the CR build simulation) ---------------------------------------
    def reaches(self, account_id: int, ip: str, port: int) -> tuple[bool, str]:
        """Whether builders of ``account_id`` reach ``ip:port`` over TCP (see :func:`.reach.reaches`)."""
        return reach.reaches(self, account_id, ip, port)
