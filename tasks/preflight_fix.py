"""Preflight's one automatic fix: the reverse-access ingress rule on GitLab's security group.

``acrvpc preflight --fix`` calls :func:`fix_gitlab_ingress` when the check ``gitlab.sg_ingress`` fails.
It reads GitLab's ECS and the ingress rules of all its groups (as preflight does), and only when the
block ``100.104.0.0/16`` is denied because NO rule covers it (wholly or in part) adds the rule
:func:`acrvpc.domain.netcheck.ingress_rule_fix` describes: ``AuthorizeSecurityGroup`` Accept TCP
``<port>/<port>`` from ``100.104.0.0/16``, priority 1, on the GitLab ECS's group (``gitlab.security_group_id``
when the spec names it, else the instance's first group). Before writing it evaluates the rules with
the new one added and writes only if the check would then pass: a Drop at priority 1 cannot be beaten
by an Accept, while a broader Drop of lower precedence (a "deny everything else" rule for 0.0.0.0/0) is
what an Accept exception is for.

It never overrides a Drop aimed at the block itself or a part of it (someone denied the builders on
purpose: revoking it is a decision for a person), nor guesses a group when GitLab's ECS is not found;
both answer ``FIX_NOT_APPLICABLE`` with the manual fix.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from alibabacloud_ecs20140526 import models as ecs_models

from acrvpc.cloud.errors import PipelineError
from acrvpc.domain import netcheck
from acrvpc.domain.spec import REVERSE_ACCESS_CIDR, GitLabAccess, Spec
from tasks.ecs_common import client_token, ecs_call
from tasks.preflight import read_gitlab_host

DESCRIPTION = "ACR VPC build reverse access"
FIX_CHECK_ID = "gitlab.sg_ingress"


def _not_applicable(message: str, fix: str) -> PipelineError:
    return PipelineError(message, code="FIX_NOT_APPLICABLE", fix=fix)


def _drops_inside_block(rule: dict[str, Any]) -> bool:
    """A Drop whose source is the block or a part of it: someone denied the builders on purpose."""
    if str(rule.get("Policy") or "Accept").lower() != "drop" or not rule.get("SourceCidrIp"):
        return False
    try:
        return netcheck.overlaps(rule["SourceCidrIp"], REVERSE_ACCESS_CIDR) == str(
            ipaddress.ip_network(rule["SourceCidrIp"], strict=False)
        )
    except ValueError:
        return False


def reverse_access_rule(group_id: str, port: int) -> dict[str, Any]:
    """The rule the fix adds, as a ``Permissions.Permission[]`` dict (the shape preflight evaluates).

    Args:
        group_id: the security group that gets the rule.
        port: GitLab's port (``gitlab.port``).

    Returns:
        Accept TCP ``port/port`` from ``100.104.0.0/16`` at priority 1, ingress.
    """
    return {
        "Direction": "ingress",
        "Policy": "Accept",
        "Priority": "1",
        "IpProtocol": "TCP",
        "PortRange": f"{port}/{port}",
        "SourceCidrIp": REVERSE_ACCESS_CIDR,
        "Description": DESCRIPTION,
        "SecurityGroupId": group_id,
    }


def fix_gitlab_ingress(ecs: Any, spec: Spec) -> list[str]:
    """Add the missing ``100.104.0.0/16`` ingress rule to GitLab's security group, if that is the whole fix.

    Args:
        ecs: an ECS 2014-05-26 client (from :func:`acrvpc.cloud.clients.cloud_clients`).
        spec: the pipeline spec (gitlab.access must be ``ecs``; gitlab.private_ip, port, security_group_id).

    Returns:
        One line per write made: ``["AuthorizeSecurityGroup sg-... Accept TCP 80/80 from 100.104.0.0/16
        (priority 1)"]``, or ``[]`` when the groups already admit the block.

    Raises:
        PipelineError: ``FIX_NOT_APPLICABLE`` when the rule alone would not fix the check (GitLab is not
            reached through an ECS, no instance has its IP, the named group is not the instance's, a Drop
            aimed at the block denies it, or a priority-1 Drop would still win), with the manual fix; or an
            ECS code from a failed call.
    """
    port, ip = spec.gitlab.port, spec.gitlab.private_ip
    if spec.gitlab.access != GitLabAccess.ECS:
        raise _not_applicable(
            f"gitlab.access is {spec.gitlab.access.value}: GitLab's security group is not checked",
            "nothing to fix automatically; see the vbr.return_route check for a data center",
        )
    host = read_gitlab_host(ecs, spec)
    instance, groups = host["instance"], host["groups"]
    wanted = spec.gitlab.security_group_id
    if not groups:
        raise _not_applicable(
            f"no ECS instance in {spec.network.vpc_id} has private IP {ip}, so there is no group to add the rule to",
            "check gitlab.private_ip, or set gitlab.security_group_id",
        )
    if instance is not None and wanted and wanted not in groups:
        raise _not_applicable(
            f"gitlab.security_group_id {wanted} is not a group of {instance.get('InstanceId')}",
            f"set gitlab.security_group_id to one of {', '.join(groups)}, or remove it",
        )
    target = wanted or next(iter(groups))
    rules = [r for perms in groups.values() for r in perms]
    before = netcheck.admits_ingress(rules, REVERSE_ACCESS_CIDR, "TCP", port, dest_ip=ip)
    if before.allowed:
        return []
    manual = netcheck.ingress_rule_fix(target, port, REVERSE_ACCESS_CIDR, spec.region)
    targeted = netcheck.evaluate(
        [r for r in rules if _drops_inside_block(r)],
        direction="ingress",
        peer_cidr=REVERSE_ACCESS_CIDR,
        protocol="TCP",
        port=port,
        local_ip=ip,
        default_accept=True,
    )
    if not targeted.allowed:
        raise _not_applicable(
            f"a Drop rule aimed at the reverse-access block denies it, and the fix never overrides "
            f"one: {targeted.reason}",
            f"revoke drop rule {targeted.rule_id or '(see detail)'} by "
            f"hand if the builders should reach GitLab; then {manual}",
        )
    after = netcheck.admits_ingress(
        rules + [reverse_access_rule(target, port)], REVERSE_ACCESS_CIDR, "TCP", port, dest_ip=ip
    )
    if not after.allowed:
        raise _not_applicable(f"adding the rule to {target} would not be enough: {after.reason}", manual)
    permission = ecs_models.AuthorizeSecurityGroupRequestPermissions(
        policy="accept",
        priority="1",
        ip_protocol="TCP",
        port_range=f"{port}/{port}",
        source_cidr_ip=REVERSE_ACCESS_CIDR,
        description=DESCRIPTION,
    )
    ecs_call(
        "AuthorizeSecurityGroup",
        ecs.authorize_security_group,
        ecs_models.AuthorizeSecurityGroupRequest(
            region_id=spec.region,
            security_group_id=target,
            permissions=[permission],
            client_token=client_token("sg-ingress", spec.name, target, REVERSE_ACCESS_CIDR, str(port)),
        ),
        f"security group {target}",
    )
    return [f"AuthorizeSecurityGroup {target} Accept TCP {port}/{port} from {REVERSE_ACCESS_CIDR} (priority 1)"]
