"""Preflight's checks: what :func:`tasks.preflight.observe` read, turned into pass/fail/warn/skip rows.

Pure: no calls. Each check has a stable id (:data:`CHECK_IDS`), a detail naming the resource, and for a
failure or warning the exact fix. :class:`Read` and :class:`Observation` are the plain data the reads
produce; :func:`evaluate` is the only entry point. An ECS instance's security groups are evaluated
together (ECS aggregates the rules of all its groups).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from acrvpc.cloud.errors import FIXES, PipelineError, error_code, is_retryable
from acrvpc.domain import netcheck
from acrvpc.domain.outcomes import CheckResult, PreflightCheck, PreflightOutcome
from acrvpc.domain.spec import REVERSE_ACCESS_CIDR, GitLabAccess, Spec

CHECK_IDS = (
    "instance.exists",
    "instance.edition",
    "instance.running",
    "vpc.exists",
    "vswitch.exists",
    "vswitch.in_vpc",
    "vswitch.free_ips",
    "zone.vpc_mode",
    "cidr.datacenter_overlap",
    "cidr.vpc_overlap",
    "gitlab.ip_in_network",
    "gitlab.sg_ingress",
    "vbr.return_route",
    "build.oversea_off",
    "allowed_ips.valid",
    "gitlab.reachable",
    "gitlab.token",
    "gitlab.projects",
)
_TOKEN_CODES = {
    "GITLAB_TOKEN_INVALID",
    "GITLAB_USER_MISMATCH",
    "GITLAB_TOKEN_INACTIVE",
    "GITLAB_TOKEN_EXPIRED",
    "GITLAB_TOKEN_SCOPE",
}


# -- observation data ----------------------------------------------------------------------------
@dataclass
class Read:
    """The result of one read: its plain-data value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Observation:
    """Everything preflight read, as plain data (SDK bodies as ``to_map()`` dicts)."""

    instance: Read
    vpc: Read
    vswitch: Read
    gitlab_host: Read | None = None  # {"instance": dict | None, "groups": {sg_id: [Permission]}}
    vbr: Read | None = None  # {"vbr": dict | None, "routes": [RouteEntry]}
    repositories: dict[str, Read] = field(default_factory=dict)  # full name -> {"repository", "source"}
    gitlab: Read | None = None  # GitLabOutcome

    def transient_check_ids(self) -> set[str]:
        """Ids of the checks whose read failed with a retryable error (throttling, 5xx, timeouts)."""
        owners = [
            ("instance.exists", self.instance),
            ("vpc.exists", self.vpc),
            ("vswitch.exists", self.vswitch),
            ("gitlab.sg_ingress", self.gitlab_host),
            ("vbr.return_route", self.vbr),
            ("gitlab.reachable", self.gitlab),
            ("gitlab.token", self.gitlab),
        ]
        owners += [("build.oversea_off", r) for r in self.repositories.values()]
        return {cid for cid, r in owners if r is not None and r.error is not None and is_retryable(r.error)}


# -- checks ----------------------------------------------------------------------------------------
def _check(cid: str, result: CheckResult, detail: str, fix: str = "") -> PreflightCheck:
    return PreflightCheck(id=cid, result=result, detail=detail, fix=fix if result in ("fail", "warn") else "")


def _either(cid: str, ok: bool, good: str, bad: str, fix: str, result: CheckResult = "fail") -> PreflightCheck:
    return _check(cid, "pass", good) if ok else _check(cid, result, bad, fix)


def _failed_read(
    cid: str, what: str, exc: BaseException | None, fix: str, own: dict[str, str] | None = None
) -> PreflightCheck:
    """A failed check for a read that raised ``exc``: ``<what> failed: [code] message``, and the fix.

    The fix is, in order: ``own[code]`` (the caller knows better, e.g. names the region), the error's
    own fix or the code's in :data:`~acrvpc.cloud.errors.FIXES`, then ``fix``.
    """
    assert exc is not None, f"{cid}: a failed read without its exception"
    code = error_code(exc) or type(exc).__name__
    if isinstance(exc, PipelineError):  # detail is the message alone (after unpickling: "[code] message Fix: fix.")
        message = str(exc.detail).removesuffix(f" Fix: {exc.fix}.").removeprefix(f"[{code}] ")
    else:
        message = str(getattr(exc, "message", None) or exc)
    # A CR business error reads "<Action> failed: <code>": ``what`` already says what failed and the code follows.
    message = re.sub(r"^\S+ failed: ", "", message)
    text = f"[{code}]" + (f" {message}" if message and message != code else "")
    own = own or {}
    if own.get(code):
        fix = own[code]
    elif isinstance(exc, PipelineError):
        fix = exc.fix or fix
    else:
        fix = FIXES.get(code, "") or fix
    if is_retryable(exc):
        fix = f"{code} may be transient: rerun preflight (the flow retries it)" + (
            f"; if it persists, {fix}" if fix else ""
        )
    return _check(cid, "fail", f"{what} failed: {text}", fix)


def _instance_checks(spec: Spec, read: Read) -> list[PreflightCheck]:
    if not read.ok:
        where = f"(Container Registry console, region {spec.region}, Instances)"
        missing = (
            f"no instance {spec.instance_id} in region {spec.region}: check instance_id, and that region is "
            f"the instance's region, in the spec {where}"
        )
        return [
            _failed_read(
                "instance.exists",
                f"GetInstance {spec.instance_id} in {spec.region}",
                read.error,
                f"check instance_id and region in the spec {where}",
                own={"INSTANCE_NOT_EXIST": missing},
            ),
            _check("instance.edition", "skip", "instance not read"),
            _check("instance.running", "skip", "-"),
        ]
    inst, where = read.value, f"(Container Registry console, region {spec.region}, Instances)"
    edition, status = str(inst.get("InstanceSpecification") or "?"), str(inst.get("InstanceStatus") or "?")
    return [
        _check("instance.exists", "pass", f"{spec.instance_id} ({inst.get('InstanceName', '')}) exists"),
        _either(
            "instance.edition",
            edition.lower().startswith("enterprise_"),
            f"{edition} is Enterprise Edition",
            f"{spec.instance_id} is {edition}; VPC builds need Enterprise Edition",
            f"use an Enterprise Edition (Enterprise_*) instance in instance_id {where}",
        ),
        _either(
            "instance.running",
            status.upper() == "RUNNING",
            f"{spec.instance_id} is RUNNING",
            f"{spec.instance_id} is {status}",
            f"wait until the instance is RUNNING (renew it if its subscription expired) {where}, then rerun",
        ),
    ]


def _network_checks(spec: Spec, vpc: Read, vsw: Read) -> list[PreflightCheck]:
    net = spec.network
    if vpc.ok:
        status = vpc.value.get("Status", "")
        checks = [
            _either(
                "vpc.exists",
                status == "Available",
                f"{net.vpc_id} ({vpc.value.get('VpcName', '')}) is Available",
                f"{net.vpc_id} is {status}",
                f"wait until {net.vpc_id} is Available",
                "warn",
            )
        ]
    else:
        checks = [
            _failed_read(
                "vpc.exists",
                f"DescribeVpcAttribute {net.vpc_id} in {spec.region}",
                vpc.error,
                "check network.vpc_id and region in the spec",
            )
        ]
    if not vsw.ok:
        return (
            checks
            + [
                _failed_read(
                    "vswitch.exists",
                    f"DescribeVSwitchAttributes {net.vswitch_id} in {spec.region}",
                    vsw.error,
                    "check network.vswitch_id and region in the spec",
                )
            ]
            + [
                _check(cid, "skip", "vSwitch not read")
                for cid in ("vswitch.in_vpc", "vswitch.free_ips", "zone.vpc_mode")
            ]
        )
    v = vsw.value
    zone, free, owner = str(v.get("ZoneId", "")), int(v.get("AvailableIpAddressCount") or 0), v.get("VpcId")
    ok, reason = netcheck.zone_support(spec.region, zone)
    return checks + [
        _either(
            "vswitch.exists",
            v.get("Status") == "Available",
            f"{net.vswitch_id} ({v.get('CidrBlock')}, zone {zone}) is Available",
            f"{net.vswitch_id} is {v.get('Status')}",
            f"wait until {net.vswitch_id} is Available",
            "warn",
        ),
        _either(
            "vswitch.in_vpc",
            owner == net.vpc_id,
            f"{net.vswitch_id} belongs to {net.vpc_id}",
            f"{net.vswitch_id} belongs to {owner}, not to network.vpc_id {net.vpc_id}",
            f"set network.vswitch_id to a vSwitch of {net.vpc_id} (or network.vpc_id to {owner})",
        ),
        _either(
            "vswitch.free_ips",
            free >= 1,
            f"{net.vswitch_id} has {free} free IP address(es) for the build ENI",
            f"{net.vswitch_id} has no free IP address for the build ENI",
            f"release addresses in {net.vswitch_id} or choose another vSwitch in a VPC-mode zone",
        ),
        _either("zone.vpc_mode", ok, reason, reason, netcheck.zone_fix(spec.region, net.vpc_id)),
    ]


def _vpc_cidrs(vpc: Read) -> list[str]:
    if not vpc.ok:
        return []
    v = vpc.value
    return (
        ([v["CidrBlock"]] if v.get("CidrBlock") else [])
        + list((v.get("SecondaryCidrBlocks") or {}).get("SecondaryCidrBlock", []))
        + list((v.get("UserCidrs") or {}).get("UserCidr", []))
    )


def _cidr_checks(spec: Spec, vpc: Read) -> list[PreflightCheck]:
    block = REVERSE_ACCESS_CIDR
    hits = [(c, o) for c in spec.network.datacenter_cidrs if (o := netcheck.overlaps(c, block))]
    checks = [
        _either(
            "cidr.datacenter_overlap",
            not hits,
            f"data-center CIDRs ({', '.join(spec.network.datacenter_cidrs) or 'none listed'}) stay clear of {block}",
            "; ".join(
                f"network.datacenter_cidrs {c} overlaps the reverse-access block {block} on {o}" for c, o in hits
            ),
            f"renumber the data center so that no CIDR overlaps {block} (ACR's builders answer from it), "
            f"and list the real CIDRs in network.datacenter_cidrs",
        )
    ]
    if not vpc.ok:
        return checks + [_check("cidr.vpc_overlap", "skip", "VPC not read")]
    hits = [(c, o) for c in _vpc_cidrs(vpc) if (o := netcheck.overlaps(c, block))]
    return checks + [
        _either(
            "cidr.vpc_overlap",
            not hits,
            f"{spec.network.vpc_id} CIDRs ({', '.join(_vpc_cidrs(vpc))}) stay clear of {block}",
            "; ".join(f"{spec.network.vpc_id} CIDR {c} overlaps {block} on {o}" for c, o in hits),
            f"use a VPC whose primary and secondary CIDRs avoid {block} (remove the secondary CIDR, "
            f"or move GitLab and the build vSwitch to another VPC)",
        )
    ]


def _gitlab_ip_check(spec: Spec, vpc: Read) -> PreflightCheck:
    ip, access = spec.gitlab.private_ip, spec.gitlab.access
    in_vpc = netcheck.ip_in_any(ip, _vpc_cidrs(vpc))
    in_dc = netcheck.ip_in_any(ip, spec.network.datacenter_cidrs)
    fix = (
        f"set gitlab.private_ip to GitLab's private address in {spec.network.vpc_id} or in a network.datacenter_cidrs "
        f"block (as bound in the registry console)"
    )
    if in_vpc and access == GitLabAccess.DATACENTER and not in_dc:
        return _check(
            "gitlab.ip_in_network",
            "warn",
            f"{ip} is in the VPC ({in_vpc}) but gitlab.access is datacenter",
            "set gitlab.access to ecs or slb, or correct gitlab.private_ip",
        )
    if in_dc and access != GitLabAccess.DATACENTER and not in_vpc:
        return _check(
            "gitlab.ip_in_network",
            "warn",
            f"{ip} is in data-center CIDR {in_dc} but gitlab.access is {access.value}",
            "set gitlab.access: datacenter (and network.vbr_id)",
        )
    if in_vpc or in_dc:
        where = f"VPC CIDR {in_vpc}" if in_vpc else f"data-center CIDR {in_dc}"
        return _check("gitlab.ip_in_network", "pass", f"GitLab's {ip} is inside {where}")
    if not vpc.ok:
        return _check("gitlab.ip_in_network", "skip", f"VPC not read and {ip} is in no data-center CIDR")
    return _check(
        "gitlab.ip_in_network",
        "fail",
        f"GitLab's {ip} is in neither {spec.network.vpc_id} ({', '.join(_vpc_cidrs(vpc))}) nor a data-center CIDR",
        fix,
    )


def _sg_check(spec: Spec, read: Read | None) -> PreflightCheck:
    access, port, ip = spec.gitlab.access, spec.gitlab.port, spec.gitlab.private_ip
    if access == GitLabAccess.SLB:
        return _check(
            "gitlab.sg_ingress",
            "skip",
            "GitLab is behind an SLB: the procedure puts no requirement on the "
            "ECS security groups (the SLB forwards the traffic)",
        )
    if access == GitLabAccess.DATACENTER or read is None:
        return _check(
            "gitlab.sg_ingress",
            "skip",
            "GitLab is in the data center: reverse access depends on the VBR "
            "return route (vbr.return_route), not on a security group",
        )
    if not read.ok:
        return _failed_read(
            "gitlab.sg_ingress",
            f"reading GitLab's ECS ({ip}) and its security groups",
            read.error,
            "grant ecs:DescribeInstances and ecs:DescribeSecurityGroupAttribute, or set gitlab.security_group_id",
        )
    instance, groups = read.value["instance"], read.value["groups"]
    wanted = spec.gitlab.security_group_id
    if instance is None and not groups:
        return _check(
            "gitlab.sg_ingress",
            "fail",
            f"no ECS instance in {spec.network.vpc_id} has private IP {ip}",
            "check gitlab.private_ip, or set gitlab.security_group_id; behind an SLB set gitlab.access: slb, "
            "in a data center gitlab.access: datacenter",
        )
    if instance is not None and wanted and wanted not in groups:
        return _check(
            "gitlab.sg_ingress",
            "fail",
            f"gitlab.security_group_id {wanted} is not a group of "
            f"{instance.get('InstanceId')} (its groups: {', '.join(groups)})",
            f"set gitlab.security_group_id to one of {', '.join(groups)}, or remove it",
        )
    rules = [r for perms in groups.values() for r in perms]
    verdict = netcheck.admits_ingress(rules, REVERSE_ACCESS_CIDR, "TCP", port, dest_ip=ip)
    who = f"{instance.get('InstanceId')} ({ip})" if instance else f"group {wanted}"
    listed, target = ", ".join(groups), wanted or next(iter(groups))
    fix = netcheck.ingress_rule_fix(target, port, REVERSE_ACCESS_CIDR, spec.region)
    if verdict.rule_id and not verdict.allowed:
        owner = next(
            (r.get("SecurityGroupId") for r in rules if r.get("SecurityGroupRuleId") == verdict.rule_id), target
        )
        fix = (
            f"revoke drop rule {verdict.rule_id} of {owner} (aliyun ecs RevokeSecurityGroup --RegionId {spec.region} "
            f"--SecurityGroupId {owner} --SecurityGroupRuleId.1 {verdict.rule_id}) or give it a larger priority "
            f"number than the accept rule; then, if no accept rule covers the block, {fix}"
        )
    return _either(
        "gitlab.sg_ingress",
        verdict.allowed,
        f"{who}: security group(s) {listed} admit TCP {port} from {REVERSE_ACCESS_CIDR}: {verdict.reason}",
        f"{who}: security group(s) {listed} do not admit TCP "
        f"{port} from the whole {REVERSE_ACCESS_CIDR}: {verdict.reason}",
        fix,
    )


def _vbr_check(spec: Spec, read: Read | None) -> PreflightCheck:
    vbr_id = spec.network.vbr_id
    if read is None:
        return _check("vbr.return_route", "skip", f"no network.vbr_id (gitlab.access is {spec.gitlab.access.value})")
    if not read.ok:
        return _failed_read(
            "vbr.return_route",
            f"reading VBR {vbr_id} and its routes",
            read.error,
            "check network.vbr_id, and grant vpc:DescribeVirtualBorderRouters and vpc:DescribeRouteEntryList",
        )
    vbr, routes = read.value["vbr"], read.value["routes"]
    if vbr is None:
        return _check(
            "vbr.return_route",
            "fail",
            f"VBR {vbr_id} was not found in {spec.region}",
            "check network.vbr_id (Express Connect console, Virtual Border Routers)",
        )
    table = vbr.get("RouteTableId", "")
    idc_note = (
        f"the data center's own route for {REVERSE_ACCESS_CIDR} towards the VBR cannot be checked from the "
        f"API: make sure the IDC router sends it over the Express Connect circuit"
    )
    if str(vbr.get("Status", "")).lower() != "active":
        return _check(
            "vbr.return_route",
            "fail",
            f"VBR {vbr_id} is {vbr.get('Status')}, not active",
            f"recover or activate VBR {vbr_id} in the Express Connect console",
        )
    fix = (
        f"add the return route to VBR {vbr_id}'s route table {table}: destination {REVERSE_ACCESS_CIDR}, next hop the "
        f"router interface of the VBR-to-VPC connection (Express Connect console, or aliyun vpc CreateRouteEntry "
        f"--RegionId {spec.region} --RouteTableId {table} --DestinationCidrBlock {REVERSE_ACCESS_CIDR} "
        f"--NextHopType RouterInterface --NextHopId <ri-...>); and {idc_note}"
    )
    route = netcheck.covering_route(routes, REVERSE_ACCESS_CIDR)
    if route is None:
        return _check(
            "vbr.return_route", "fail", f"VBR {vbr_id} (table {table}) has no route covering {REVERSE_ACCESS_CIDR}", fix
        )
    hops = (route.get("NextHops") or {}).get("NextHop", [])
    kinds = {h.get("NextHopType", "") for h in hops}
    label = f"route {route.get('RouteEntryId')} {route.get('DestinationCidrBlock')} -> {', '.join(sorted(kinds))}"
    if "PhysicalConnection" in kinds:
        return _check(
            "vbr.return_route",
            "fail",
            f"VBR {vbr_id}: {label} sends the block to the data center, not back to the VPC",
            fix,
        )
    if route.get("Status") not in ("Available", "Created"):
        return _check(
            "vbr.return_route",
            "warn",
            f"VBR {vbr_id}: {label} is {route.get('Status')}",
            "wait until the route is Available, then rerun",
        )
    return _check("vbr.return_route", "pass", f"VBR {vbr_id}: {label} is {route.get('Status')}; note: {idc_note}")


def _oversea_check(spec: Spec, obs: Observation) -> PreflightCheck:
    if not obs.instance.ok:
        return _check("build.oversea_off", "skip", "instance not read")
    bad, notes, errors = [], [], []
    for name, read in obs.repositories.items():
        if not read.ok:
            errors.append(
                _failed_read(
                    "build.oversea_off",
                    f"GetRepository/GetRepoSourceCodeRepo {name}",
                    read.error,
                    "check the RAM permissions for cr:GetRepository and cr:GetRepoSourceCodeRepo",
                )
            )
        elif read.value["repository"] is None:
            notes.append(f"{name}: will be created and bound with OverseaBuild=false")
        elif read.value["source"] is None:
            notes.append(f"{name}: will be bound with OverseaBuild=false")
        elif str(read.value["source"].get("OverseaBuild")).lower() == "false":
            notes.append(f"{name}: bound, OverseaBuild=false")
        else:
            bad.append((name, read.value))
    if errors:
        return _check("build.oversea_off", "fail", "; ".join(e.detail for e in errors), errors[0].fix)
    if bad:
        fixes = [
            f"aliyun cr UpdateRepoSourceCodeRepo --InstanceId {spec.instance_id} --RepoId "
            f"{v['repository']['RepoId']} --CodeRepoType {v['source'].get('CodeRepoType')} --CodeRepoNamespaceName "
            f"{v['source'].get('CodeRepoNamespaceName')} --CodeRepoName {v['source'].get('CodeRepoName')} "
            f"--OverseaBuild false"
            for _, v in bad
        ]
        return _check(
            "build.oversea_off",
            "fail",
            "builds on servers outside mainland China are on for "
            + ", ".join(n for n, _ in bad)
            + " (they cannot reach a VPC)",
            "turn off 'Build With Servers Deployed Outside Chinese Mainland' in each repository's build "
            "settings, or run: " + "; ".join(fixes),
        )
    return _check("build.oversea_off", "pass", "; ".join(notes))


def _allowed_ips_check(spec: Spec, vpc: Read) -> PreflightCheck:
    targets = spec.link.allowed_ips
    if not targets:
        return _check("allowed_ips.valid", "pass", "no egress destinations besides GitLab")
    reachable = _vpc_cidrs(vpc) + list(spec.network.datacenter_cidrs)
    bad = [t.label for t in targets if netcheck.overlaps(t.cidr, REVERSE_ACCESS_CIDR)]
    if bad:
        return _check(
            "allowed_ips.valid",
            "fail",
            f"link.allowed_ips {', '.join(bad)} overlap(s) the reverse-access block {REVERSE_ACCESS_CIDR}",
            "remove them from link.allowed_ips",
        )
    outside = (
        [t.label for t in targets if not any(netcheck.overlaps(t.cidr, c) == t.cidr for c in reachable)]
        if vpc.ok
        else []
    )
    broad = [t.label for t in targets if ipaddress.ip_network(t.cidr).prefixlen < 16]
    labels = ", ".join(t.label for t in targets)
    parts = ([f"{', '.join(outside)} outside the VPC and data-center CIDRs"] if outside else []) + (
        [f"{', '.join(broad)} wider than /16"] if broad else []
    )
    return _either(
        "allowed_ips.valid",
        not parts,
        f"link.allowed_ips ({labels}) are valid and inside the VPC or data center",
        f"link.allowed_ips ({labels}): " + "; ".join(parts),
        "list only the private addresses the build needs (e.g. the Maven mirror's IP:port)",
        "warn",
    )


def _gitlab_checks(spec: Spec, read: Read | None) -> list[PreflightCheck]:
    if read is None:
        return [_check(i, "skip", "GitLab not checked (no GitLab client given)") for i in CHECK_IDS[-3:]]
    reach = _check("gitlab.reachable", "pass", f"GitLab answers at {spec.gitlab.api_base}")
    if read.ok:
        out = read.value
        return [
            reach,
            _either(
                "gitlab.token",
                not out.notes,
                f"the token authenticates as {out.username} with "
                f"scope(s) {', '.join(out.scopes)}, expires {out.expires_at or 'never'}",
                "; ".join(out.notes),
                f"rotate the token, update the token block {spec.gitlab.token_block!r} (gitlab.token_block)",
                "warn",
            ),
            _check("gitlab.projects", "pass", ", ".join(f"{p} (id {i})" for p, i in out.projects.items())),
        ]
    code = error_code(read.error) or "" if read.error is not None else ""
    if code == "GITLAB_UNREACHABLE":
        return [
            _failed_read("gitlab.reachable", "reaching GitLab", read.error, ""),
            _check("gitlab.token", "skip", "GitLab unreachable"),
            _check("gitlab.projects", "skip", "-"),
        ]
    if code.startswith("GITLAB_PROJECT"):
        return [
            reach,
            _check("gitlab.token", "pass", f"the token is valid for {spec.gitlab.username}"),
            _failed_read("gitlab.projects", "checking the GitLab projects", read.error, ""),
        ]
    return [
        reach if code in _TOKEN_CODES else _check("gitlab.reachable", "skip", "not determined"),
        _failed_read(
            "gitlab.token",
            "validating the GitLab token",
            read.error,
            f"check the token block {spec.gitlab.token_block!r} (gitlab.token_block: a GitLab Credentials or Secret block)",
        ),
        _check("gitlab.projects", "skip", "token not valid"),
    ]


def evaluate(spec: Spec, obs: Observation) -> PreflightOutcome:
    """Turn an observation into checks (pure: no calls).

    Args:
        spec: the pipeline spec.
        obs: what :func:`observe` read.

    Returns:
        The :class:`~acrvpc.domain.outcomes.PreflightOutcome`, checks in :data:`CHECK_IDS` order.
    """
    checks = (
        _instance_checks(spec, obs.instance)
        + _network_checks(spec, obs.vpc, obs.vswitch)
        + _cidr_checks(spec, obs.vpc)
        + [
            _gitlab_ip_check(spec, obs.vpc),
            _sg_check(spec, obs.gitlab_host),
            _vbr_check(spec, obs.vbr),
            _oversea_check(spec, obs),
            _allowed_ips_check(spec, obs.vpc),
        ]
        + _gitlab_checks(spec, obs.gitlab)
    )
    resources = {"instance": spec.instance_id, "vpc": spec.network.vpc_id, "vswitch": spec.network.vswitch_id}
    if obs.gitlab_host is not None and obs.gitlab_host.ok:
        resources["gitlab_security_groups"] = ", ".join(obs.gitlab_host.value["groups"])
    if spec.network.vbr_id:
        resources["vbr"] = spec.network.vbr_id
    return PreflightOutcome(checks=checks, resources=resources)
