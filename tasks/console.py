"""Console mode: the steps only the registry console can do, verified through the API.

The console's "manage link" and "bind account" (Instances > instance > Repository > Code
Source > GitLab) have no public API, so in ``link.mode: console`` a person does them while the
flow waits (:mod:`flows.console_steps`); this module checks their work afterwards, and re-exports
the runbooks the flow shows them (:mod:`tasks.console_runbook`).

Link (ECS reads only): ``DescribeSecurityGroups`` (``VpcId``, ``ServiceManaged=true``),
``DescribeSecurityGroupAttribute`` per group, ``DescribeNetworkInterfaces`` (``VpcId``,
``ServiceManaged=true``). The link is right when a service-managed ENI in the spec's vSwitch is
``InUse`` and the rules of its groups (one of them service-managed), evaluated together with
:mod:`acrvpc.domain.netcheck`, are exactly the spec's: no inbound Accept rule; egress admits GitLab's
IP:port and every ``link.allowed_ips`` target; no Accept rule admits anything else; and
everything else is dropped (a Drop ALL to 0.0.0.0/0, or an enterprise group's default). A
mismatch is ``CONSOLE_LINK_MISMATCH`` listing each difference; no service-managed group or ENI
in the VPC is ``CONSOLE_LINK_MISSING``.

Account (CR; :mod:`tasks.console_account`, re-exported here): a bound repository of the spec answers by ``GetRepoSourceCodeRepo.CodeRepoDomain``
(reads only). Otherwise ``CreateRepoSourceCodeRepo`` on an existing unbound repository of the
spec, with exactly the binding the binding stage makes, answers: ``SOURCE_CODE_ACCOUNT_NOT_EXIST``
means not bound, and nothing was written; success means bound (and that repository's binding,
which the binding stage would make next, is done). When no repository of the spec exists yet,
CR cannot be asked without one: :func:`check_account` says so (``bound=None``) unless asked to
create the first repository's namespace and repository, as the binding stage does first anyway.

Assumptions: the console's managed group admits GitLab on the spec's ``gitlab.port`` and an
allowed target without a port on all TCP ports (the dialog's fields are IP addresses only; the
sandbox emulates it so). The GitLab token is typed by the operator into the console; it is
never shown, logged or stored here.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alibabacloud_ecs20140526 import models as ecs_models
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, PipelineError
from acrvpc.cloud.paging import paginate
from acrvpc.cloud.waiting import wait_until
from acrvpc.domain import netcheck
from acrvpc.domain.outcomes import EniOutcome, LinkOutcome
from acrvpc.domain.spec import Spec
from tasks.console_account import (
    ACCOUNT_NOT_BOUND_CODE,
    VERIFY_FIRST_POLL_S,
    VERIFY_MAX_POLL_S,
    AccountOutcome,
    account_bound,
    check_account,
    check_account_task,
    verify_account,
    verify_account_task,
)
from tasks.console_runbook import account_instructions, link_instructions, link_targets
from tasks.ecs_common import ALL_IPV4, canonical_cidr, ecs_call

LINK_MISSING = "CONSOLE_LINK_MISSING"
LINK_MISMATCH = "CONSOLE_LINK_MISMATCH"
__all__ = [
    "ACCOUNT_NOT_BOUND_CODE",
    "AccountOutcome",
    "ConsoleLinkCheck",
    "account_bound",
    "account_instructions",
    "check_account",
    "check_account_task",
    "check_console_link",
    "link_differences",
    "link_instructions",
    "link_targets",
    "verify_account",
    "verify_account_task",
    "verify_console_link",
    "wait_for_console_link",
]


# -- link ---------------------------------------------------------------------------------------
def _rule_text(rule: Mapping[str, Any]) -> str:
    return (
        f"{rule.get('Policy') or 'Accept'} {(rule.get('IpProtocol') or 'ALL').upper()} "
        f"{rule.get('PortRange') or '-1/-1'}, priority {rule.get('Priority') or 1}, "
        f"rule {rule.get('SecurityGroupRuleId') or '(no id)'}"
    )


def _accept(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("Policy") or "Accept").lower() == "accept"


def _covered(rule: Mapping[str, Any], targets: list[tuple[str, str, int, int]]) -> bool:
    """Whether an egress Accept rule admits nothing beyond the targets (TCP, inside a target's block and ports)."""
    if (rule.get("IpProtocol") or "").upper() != "TCP" or not rule.get("DestCidrIp"):
        return False
    try:
        net = ipaddress.ip_network(canonical_cidr(str(rule["DestCidrIp"])))
        lo, hi = netcheck.parse_port_range(rule.get("PortRange"))
    except ValueError:
        return False
    return any(
        net.version == 4 and net.subnet_of(ipaddress.IPv4Network(cidr)) and t_lo <= lo and hi <= t_hi
        for _, cidr, t_lo, t_hi in targets
    )


def link_differences(
    spec: Spec, rules: Sequence[Mapping[str, Any]], *, default_egress_accept: bool = True
) -> list[str]:
    """How security-group rules differ from the link the spec asks for (empty when they match).

    Args:
        spec: the pipeline spec.
        rules: ``Permissions.Permission[]`` entries as ``to_map()`` gives them, of ALL the groups of the ENI.
        default_egress_accept: whether traffic no rule decides goes out (basic groups: yes; enterprise: no).

    Returns:
        One line per difference, e.g. ``egress open to 0.0.0.0/0 (Accept ALL -1/-1, ...)`` or
        ``allowed IP 192.168.1.30:8081 missing: ...``.
    """
    diffs = [
        f"inbound rule accepts {(r.get('IpProtocol') or 'ALL').upper()} {r.get('PortRange') or '-1/-1'} from "
        f"{r.get('SourceCidrIp') or r.get('SourceGroupId') or '?'} ({_rule_text(r)}); the link admits no inbound "
        f"traffic"
        for r in rules
        if str(r.get("Direction") or "").lower() == "ingress" and _accept(r)
    ]
    egress = [r for r in rules if str(r.get("Direction") or "").lower() == "egress"]
    targets = link_targets(spec)
    for label, cidr, lo, hi in targets:
        for port in dict.fromkeys((lo, hi)):
            verdict = netcheck.admits_egress(egress, cidr, "TCP", port)
            if not verdict.allowed:
                diffs.append(f"{label} missing: {verdict.reason}")
                break
    for r in egress:
        if _accept(r) and not _covered(r, targets):
            dest = r.get("DestCidrIp") or r.get("DestGroupId") or r.get("DestPrefixListId") or "?"
            diffs.append(f"egress open to {canonical_cidr(str(dest))} ({_rule_text(r)})")
    drop_all = any(
        not _accept(r)
        and (r.get("IpProtocol") or "").upper() == "ALL"
        and canonical_cidr(str(r.get("DestCidrIp") or "")) == ALL_IPV4
        for r in egress
    )
    if default_egress_accept and not drop_all:
        diffs.append(f"egress open to {ALL_IPV4} by default: no Drop ALL {ALL_IPV4} egress rule after the Accept rules")
    return diffs


def service_groups(ecs: Any, spec: Spec) -> list[Any]:
    """The service-managed security groups in the spec's VPC (``DescribeSecurityGroups`` items)."""
    vpc = spec.network.vpc_id

    def fetch(token: str | None) -> Any:
        return ecs_call(
            "DescribeSecurityGroups",
            ecs.describe_security_groups,
            ecs_models.DescribeSecurityGroupsRequest(
                region_id=spec.region, vpc_id=vpc, service_managed=True, max_results=100, next_token=token
            ),
            f"VPC {vpc}",
        )

    return list(
        paginate(
            fetch,
            lambda b: b.security_groups.security_group if b.security_groups else [],
            what=f"DescribeSecurityGroups in VPC {vpc}",
        )
    )


def service_network_interfaces(ecs: Any, spec: Spec) -> list[Any]:
    """The service-managed ENIs in the spec's VPC (``DescribeNetworkInterfaces`` items)."""
    vpc = spec.network.vpc_id

    def fetch(token: str | None) -> Any:
        return ecs_call(
            "DescribeNetworkInterfaces",
            ecs.describe_network_interfaces,
            ecs_models.DescribeNetworkInterfacesRequest(
                region_id=spec.region, vpc_id=vpc, service_managed=True, max_results=100, next_token=token
            ),
            f"VPC {vpc}",
        )

    return list(
        paginate(
            fetch,
            lambda b: b.network_interface_sets.network_interface_set if b.network_interface_sets else [],
            what=f"DescribeNetworkInterfaces in VPC {vpc}",
        )
    )


def group_rules(ecs: Any, spec: Spec, group_id: str) -> list[dict[str, Any]]:
    """Every rule of one group as ``to_map()`` dicts (``DescribeSecurityGroupAttribute``, both directions)."""
    body = ecs_call(
        "DescribeSecurityGroupAttribute",
        ecs.describe_security_group_attribute,
        ecs_models.DescribeSecurityGroupAttributeRequest(
            region_id=spec.region, security_group_id=group_id, direction="all"
        ),
        f"security group {group_id}",
    )
    return [p.to_map() for p in (body.permissions.permission if body.permissions else []) or []]


def _mismatch(spec: Spec, what: str, diffs: list[str]) -> PipelineError:
    return PipelineError(
        f"the console link for {spec.instance_id} in {spec.network.vpc_id} does not match the spec ({what}): "
        + "; ".join(diffs),
        code=LINK_MISMATCH,
        fix=(
            f"in the Container Registry console open instance {spec.instance_id} > Repository > Code Source > "
            f"GitLab > Manage Link and correct it to the values in the run's console-link-{spec.name} artifact, "
            f"then rerun"
        ),
    )


def verify_console_link(ecs: Any, spec: Spec) -> tuple[LinkOutcome, EniOutcome]:
    """Check, through ECS only, the link the operator made with the console's "Manage Link".

    Args:
        ecs: an ECS 2014-05-26 client (from :mod:`acrvpc.cloud.clients`).
        spec: the pipeline spec (network.vpc_id/vswitch_id, gitlab.private_ip/port, link.allowed_ips).

    Returns:
        The service-managed group (``LinkOutcome``) and ENI (``EniOutcome``, ``InUse``); no changes.

    Raises:
        PipelineError: ``CONSOLE_LINK_MISSING`` (no service-managed group or ENI in the VPC) or
            ``CONSOLE_LINK_MISMATCH`` naming every difference (rules, vSwitch, ENI status).
    """
    vpc, vsw = spec.network.vpc_id, spec.network.vswitch_id
    groups = {g.security_group_id: g for g in service_groups(ecs, spec)}
    enis = service_network_interfaces(ecs, spec)
    if not groups and not enis:
        raise PipelineError(
            f"no service-managed security group or network interface in {vpc}: the console link for "
            f"{spec.instance_id} has not been made",
            code=LINK_MISSING,
            fix=f"do the console's Manage Link step shown in the run's console-link-{spec.name} artifact, then rerun",
        )
    rules: dict[str, list[dict[str, Any]]] = {}

    def rules_of(gid: str) -> list[dict[str, Any]]:
        if gid not in rules:
            rules[gid] = group_rules(ecs, spec, gid)
        return rules[gid]

    def enterprise(gid: str) -> bool:
        return gid in groups and (groups[gid].security_group_type or "").lower() == "enterprise"

    problems: list[str] = []
    for eni in [n for n in enis if n.v_switch_id == vsw]:
        gids = list(eni.security_group_ids.security_group_id or []) if eni.security_group_ids else []
        managed = [g for g in gids if g in groups]
        diffs = (
            []
            if managed
            else [
                f"ENI {eni.network_interface_id} uses no service-managed security group ({', '.join(gids) or 'none'})"
            ]
        )
        diffs += link_differences(
            spec, [r for g in gids for r in rules_of(g)], default_egress_accept=not all(enterprise(g) for g in gids)
        )
        if not diffs and eni.status == "InUse":
            gid = managed[0]
            return (
                LinkOutcome(
                    security_group_id=gid,
                    resources={"security_group": f"{gid} (service-managed)"},
                    notes=[f"console link verified: {gid} admits only the spec's egress"],
                ),
                EniOutcome(
                    network_interface_id=eni.network_interface_id,
                    status=eni.status,
                    private_ip=eni.private_ip_address or "",
                    resources={"eni": f"{eni.network_interface_id} (service-managed)"},
                ),
            )
        if not diffs:
            diffs = [f"ENI {eni.network_interface_id} is {eni.status}, not InUse"]
        problems.append(f"ENI {eni.network_interface_id} with {', '.join(gids) or 'no group'}: " + "; ".join(diffs))
    if problems:
        raise _mismatch(spec, f"vSwitch {vsw}", problems)
    elsewhere = [f"service-managed ENI {n.network_interface_id} is in vSwitch {n.v_switch_id}, not {vsw}" for n in enis]
    diffs = elsewhere or [f"no service-managed network interface in vSwitch {vsw}"]
    for gid in sorted(groups):
        group_diffs = link_differences(spec, rules_of(gid), default_egress_accept=not enterprise(gid))
        if group_diffs:
            diffs.append(f"group {gid}: " + "; ".join(group_diffs))
    raise _mismatch(spec, f"vSwitch {vsw}", diffs)


class ConsoleLinkCheck(BaseModel):
    """The link check before any pause: the verified link, or what is missing or wrong."""

    link: LinkOutcome | None = None
    eni: EniOutcome | None = None
    code: str = ""  # CONSOLE_LINK_MISSING | CONSOLE_LINK_MISMATCH when not ok
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.link is not None


def check_console_link(ecs: Any, spec: Spec) -> ConsoleLinkCheck:
    """:func:`verify_console_link`, answering instead of raising when the link is missing or wrong.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.

    Returns:
        The verified link and ENI, or the code and the problem (without the fix: the runbook is the fix).

    Raises:
        PipelineError: an ECS error (not a missing or mismatching link).
    """
    try:
        link, eni = verify_console_link(ecs, spec)
    except PipelineError as exc:
        if exc.code not in (LINK_MISSING, LINK_MISMATCH):
            raise
        return ConsoleLinkCheck(code=exc.code, problem=str(exc).split(" Fix: ")[0])
    return ConsoleLinkCheck(link=link, eni=eni)


def wait_for_console_link(
    ecs: Any, spec: Spec, *, timeout_s: float, sleep: Callable[[float], None] = time.sleep
) -> tuple[LinkOutcome, EniOutcome]:
    """:func:`verify_console_link`, retried for a while: the console may still be finishing (ENI attaching).

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.
        timeout_s: how long to keep retrying a missing or mismatching link (0: check once).
        sleep: the sleep function between checks (1 s, doubling to 5 s).

    Returns:
        As :func:`verify_console_link`.

    Raises:
        PipelineError: the last ``CONSOLE_LINK_MISSING`` / ``CONSOLE_LINK_MISMATCH`` once time is up.
    """
    return wait_until(
        lambda: verify_console_link(ecs, spec),
        what=f"the console link in VPC {spec.network.vpc_id}",
        timeout_s=timeout_s,
        sleep=sleep,
        first_s=VERIFY_FIRST_POLL_S,
        max_s=VERIFY_MAX_POLL_S,
        retry_on=lambda exc: isinstance(exc, PipelineError) and exc.code in (LINK_MISSING, LINK_MISMATCH),
    )


# -- tasks ----------------------------------------------------------------------------------------
@task(name="check-console-link", task_run_name="check-console-link {spec.name}", cache_policy=NO_CACHE, **RETRY)
def check_console_link_task(spec: Spec) -> ConsoleLinkCheck:
    """Whether the console link is already right (console mode, before any pause).

    Args:
        spec: the pipeline spec.

    Returns:
        The :class:`ConsoleLinkCheck`.

    Raises:
        PipelineError: a fatal ECS error.
    """
    return check_console_link(cloud.cloud_clients(spec).ecs, spec)


@task(name="verify-console-link", task_run_name="verify-console-link {spec.name}", cache_policy=NO_CACHE, **RETRY)
def verify_console_link_task(spec: Spec, wait_s: float = 0.0) -> tuple[LinkOutcome, EniOutcome]:
    """Verify the console-made link through ECS (console mode).

    Args:
        spec: the pipeline spec.
        wait_s: how long to keep retrying a link that is missing or not right yet.

    Returns:
        The service-managed group and ENI.

    Raises:
        PipelineError: ``CONSOLE_LINK_MISSING`` or ``CONSOLE_LINK_MISMATCH`` naming each difference.
    """
    return wait_for_console_link(cloud.cloud_clients(spec).ecs, spec, timeout_s=wait_s)
