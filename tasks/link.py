"""Stage "link" (api mode): the security group the registry's builders use, converged to the spec.

Calls: ECS ``DescribeSecurityGroups`` (by VPC and the link tag) and ``DescribeSecurityGroupAttribute``
(reads); ``CreateSecurityGroup``, ``ModifySecurityGroupPolicy``, ``RevokeSecurityGroup``,
``AuthorizeSecurityGroupEgress``, ``RevokeSecurityGroupEgress`` (writes, only for what differs).

Desired state of the group (a basic ``normal`` group, tagged ``acr-vpc-build:link=<name>``):

- ``InnerAccessPolicy`` Drop;
- no inbound Accept rule (builders never need inbound traffic; any found is drift and revoked);
- egress, in priority order: Accept TCP to GitLab ``private_ip/32`` on its port, Accept TCP to each
  ``link.allowed_ips`` target, both at priority 1; then Drop ALL to ``0.0.0.0/0`` at priority 100
  (a basic group allows all egress by default, so the explicit Drop is what restricts it).

Egress rules that are not desired are revoked by ``SecurityGroupRuleId``. Missing ones are added in
one ``AuthorizeSecurityGroupEgress`` call, before the revocations, so the group never admits more
than the spec while it converges. A converged group costs two reads and no write.

Creates carry a deterministic ``ClientToken``, so a create repeated in place (a lost answer) makes
one group, not two. ECS may remember a token longer than its resource: after a teardown, a rerun's
create could be answered with the deleted group's id. So every create with a token is checked
(:func:`create_with_token`): an answered resource that is gone (or, for an ENI, ``Deleting``) is
not used, and the create is made again with a token derived from the stale id and the run.

Errors: ``LINK_AMBIGUOUS`` when more than one group carries the link tag; an ECS error that is not
transient becomes a :class:`~acrvpc.cloud.errors.PipelineError` with the provider's code and a fix.

Plan mode (``plan=True``, used by ``acrvpc plan``): the same reads, and each write the stage would make
recorded in ``changes`` (in the same words as a real run) without calling it. A group that does not exist
yet is named :data:`PLANNED_GROUP` and read as a new basic group would be: ``InnerAccessPolicy`` Accept,
no rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alibabacloud_ecs20140526 import models as ecs_models

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError, explain
from acrvpc.domain.outcomes import LinkOutcome
from acrvpc.domain.spec import Spec
from acrvpc.lazy_prefect import task
from tasks.ecs_common import (
    ALL_IPV4,
    canonical_cidr,
    create_with_token,
    ecs_call,
    retry_stage,
    run_logger,
)

PLANNED_GROUP = "<new security group>"  # plan mode: the id of a group a run would create
GROUP_GONE_CODE = "InvalidSecurityGroupId.NotFound"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EgressRule:
    """One egress rule in comparable form (description excluded from comparisons)."""

    policy: str  # Accept | Drop
    priority: int
    ip_protocol: str  # upper case
    port_range: str
    cidr: str  # canonical CIDR
    description: str = ""

    @property
    def key(self) -> tuple[str, int, str, str, str]:
        return self.policy, self.priority, self.ip_protocol, self.port_range, self.cidr

    def label(self) -> str:
        return f"{self.policy} {self.ip_protocol} {self.port_range} to {self.cidr} (priority {self.priority})"


def group_name(spec: Spec) -> str:
    """The managed group's name.

    Args:
        spec: the pipeline spec.

    Returns:
        ``acr-vpc-build-<spec.name>``.
    """
    return spec.resource_name


def desired_egress(spec: Spec) -> list[EgressRule]:
    """The egress rules the spec asks for.

    Args:
        spec: the pipeline spec (gitlab.private_ip/port, link.allowed_ips).

    Returns:
        Accept TCP to GitLab, Accept TCP to each allowed target (priority 1), then Drop ALL to
        0.0.0.0/0 (priority 100), without duplicates.
    """
    gl = spec.gitlab
    rules = [EgressRule("Accept", 1, "TCP", f"{gl.port}/{gl.port}", canonical_cidr(gl.private_ip), "GitLab")]
    for target in spec.link.allowed_ips:
        rules.append(
            EgressRule("Accept", 1, "TCP", target.port_range, canonical_cidr(target.cidr), f"Allowed {target.label}")
        )
    rules.append(EgressRule("Drop", 100, "ALL", "-1/-1", ALL_IPV4, "Deny everything else"))
    unique: dict[tuple[str, int, str, str, str], EgressRule] = {}
    for rule in rules:
        unique.setdefault(rule.key, rule)
    return list(unique.values())


def link_group_gone_fix(spec: Spec, group_id: str) -> str:
    """The fix for ``InvalidSecurityGroupId.NotFound`` about the link's own group (not GitLab's).

    Args:
        spec: the pipeline spec.
        group_id: the link's managed security group, as the link stage returned it.

    Returns:
        What to do: the group was deleted after the link stage made or found it.
    """
    key, value = spec.tag
    return (
        f"{group_id} is the link's managed security group (tagged {key}={value}), not gitlab.security_group_id: "
        f"it was deleted after the link stage made or found it. Check that no teardown or person deletes it "
        f"meanwhile, then start a new run (its link stage creates the group again)"
    )


def _permission_rule(p: Any) -> EgressRule | None:
    if p.dest_group_id or p.dest_prefix_list_id or not p.dest_cidr_ip:
        return None  # not a CIDR rule: never one of ours
    return EgressRule(
        p.policy.capitalize() if p.policy else "Accept",
        int(p.priority or 1),
        (p.ip_protocol or "").upper(),
        p.port_range or "",
        canonical_cidr(p.dest_cidr_ip),
        p.description or "",
    )


def find_security_group(ecs: Any, spec: Spec) -> str | None:
    """Look up the group tagged for this link in the spec's VPC.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.

    Returns:
        The group id, or ``None`` when no group carries the tag.

    Raises:
        PipelineError: ``LINK_AMBIGUOUS`` when several groups carry the tag.
    """
    key, value = spec.tag
    request = ecs_models.DescribeSecurityGroupsRequest(
        region_id=spec.region,
        vpc_id=spec.network.vpc_id,
        max_results=100,
        tag=[ecs_models.DescribeSecurityGroupsRequestTag(key=key, value=value)],
    )
    body = ecs_call("DescribeSecurityGroups", ecs.describe_security_groups, request, f"VPC {spec.network.vpc_id}")
    groups = body.security_groups.security_group if body.security_groups else []
    ids = sorted(g.security_group_id for g in groups)
    if len(ids) > 1:
        raise PipelineError(
            f"{len(ids)} security groups in {spec.network.vpc_id} carry the tag {key}={value}: {', '.join(ids)}",
            code="LINK_AMBIGUOUS",
            fix=f"keep the one the ENI uses, delete the others (or remove their {key} tag), then rerun",
        )
    return ids[0] if ids else None


def ensure_security_group(
    ecs: Any,
    spec: Spec,
    *,
    plan: bool = False,
    on_drift: Callable[[str, list[str]], None] | None = None,
    on_create: Callable[[str], None] | None = None,
) -> LinkOutcome:
    """Find or create the link's security group and converge its policy and rules to the spec.

    Args:
        ecs: an ECS 2014-05-26 client (from :func:`acrvpc.cloud.clients.ecs_client`).
        spec: the pipeline spec (network.vpc_id, gitlab.private_ip/port, link.allowed_ips).
        plan: read only, and record the writes a run would make in ``changes`` without making them
            (a group to be created is named :data:`PLANNED_GROUP`).
        on_drift: told (before any write) how a group that already existed differs from the spec.
        on_create: told the id of the group as soon as this call has created it (before its rules,
            so a caller knows what it made even when a later write fails).

    Returns:
        LinkOutcome with the group id and one ``changes`` entry per write (none when converged).

    Raises:
        PipelineError: ``LINK_AMBIGUOUS`` (several tagged groups), or an ECS code such as
            ``InvalidVpcId.NotFound`` with its fix.
    """
    changes: list[str] = []
    group_id = find_security_group(ecs, spec)
    if group_id is None and plan:
        group_id = PLANNED_GROUP
        changes.append(f"CreateSecurityGroup {group_id}")
    elif group_id is None:
        key, value = spec.tag

        def create(token: str) -> Any:
            request = ecs_models.CreateSecurityGroupRequest(
                region_id=spec.region,
                vpc_id=spec.network.vpc_id,
                security_group_name=group_name(spec),
                description=f"Managed by acr-vpc-build for link {spec.name}: registry builds in this VPC",
                security_group_type="normal",
                client_token=token,
                tag=[ecs_models.CreateSecurityGroupRequestTag(key=key, value=value)],
            )
            return ecs_call("CreateSecurityGroup", ecs.create_security_group, request, f"VPC {spec.network.vpc_id}")

        def unusable(body: Any) -> tuple[str, str | None]:
            gid = body.security_group_id
            return gid, None if _group_exists(ecs, spec, gid) else "not found"

        group_id = create_with_token(
            "sg", (spec.name, spec.network.vpc_id), create, unusable, "link's security group"
        ).security_group_id
        changes.append(f"CreateSecurityGroup {group_id}")
        if on_create is not None:
            on_create(group_id)
        on_drift = None  # a group created now cannot have drifted
    changes += converge_rules(ecs, spec, group_id, plan=plan, on_drift=on_drift)
    return LinkOutcome(security_group_id=group_id, resources={"security_group": group_id}, changes=changes)


def _group_exists(ecs: Any, spec: Spec, group_id: str) -> bool:
    """Whether ``DescribeSecurityGroups`` lists the group (one read, after a create with a token)."""
    body = ecs_call(
        "DescribeSecurityGroups",
        ecs.describe_security_groups,
        ecs_models.DescribeSecurityGroupsRequest(region_id=spec.region, security_group_ids=json.dumps([group_id])),
        f"security group {group_id}",
    )
    groups = body.security_groups.security_group if body.security_groups else []
    return any(g.security_group_id == group_id for g in groups)


def _differences(
    group_id: str, policy: str, missing: list[EgressRule], extra: list[Any], inbound: list[Any]
) -> list[str]:
    """How an existing group differs from the spec, in words (for the drift report)."""
    found = []
    if (policy or "").lower() != "drop":
        found.append(f"InnerAccessPolicy is {policy or 'unset'} (the spec's link needs Drop)")
    found += [f"egress rule {r.label()} is missing" for r in missing]
    for p in extra:
        rule = _permission_rule(p)
        found.append(
            f"egress rule {p.security_group_rule_id} ({rule.label() if rule else p.policy}) is not in the spec"
        )
    found += [
        f"inbound Accept rule {p.security_group_rule_id} ({p.ip_protocol} {p.port_range} from "
        f"{p.source_cidr_ip or p.source_group_id or '?'}): builders need no inbound access"
        for p in inbound
    ]
    return found


def converge_rules(
    ecs: Any, spec: Spec, group_id: str, *, plan: bool = False, on_drift: Callable[[str, list[str]], None] | None = None
) -> list[str]:
    """Bring one group's inner access policy and rules to the desired state.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.
        group_id: the link's security group (:data:`PLANNED_GROUP` in plan mode for a group not yet created).
        plan: read only; return the lines of the writes a run would make without making them.
        on_drift: called with the group id and the differences, before any write, when the group
            differs from the spec (the caller passes it for a group that existed before this run).

    Returns:
        One line per write made, or in plan mode to be made (empty when the group is converged).

    Raises:
        PipelineError: a fatal ECS error, with its code and fix.
    """
    changes: list[str] = []
    what = f"security group {group_id}"
    permissions: list[Any]
    if plan and group_id == PLANNED_GROUP:
        policy, permissions = "Accept", []  # what CreateSecurityGroup makes: a basic group without rules
    else:
        attr = ecs_call(
            "DescribeSecurityGroupAttribute",
            ecs.describe_security_group_attribute,
            ecs_models.DescribeSecurityGroupAttributeRequest(
                region_id=spec.region, security_group_id=group_id, direction="all"
            ),
            what,
        )
        policy, permissions = attr.inner_access_policy, attr.permissions.permission if attr.permissions else []
    inbound = [p for p in permissions if p.direction == "ingress" and (p.policy or "").lower() == "accept"]
    egress = [p for p in permissions if p.direction == "egress"]
    desired = desired_egress(spec)
    wanted = {r.key for r in desired}
    present: set[tuple[str, int, str, str, str]] = set()
    extra: list[Any] = []
    for p in egress:
        rule = _permission_rule(p)
        if rule is None or rule.key not in wanted or rule.key in present:
            extra.append(p)
        else:
            present.add(rule.key)
    missing = [r for r in desired if r.key not in present]
    differences = _differences(group_id, policy, missing, extra, inbound)
    if differences and on_drift is not None:
        on_drift(group_id, differences)

    if (policy or "").lower() != "drop":
        if not plan:
            ecs_call(
                "ModifySecurityGroupPolicy",
                ecs.modify_security_group_policy,
                ecs_models.ModifySecurityGroupPolicyRequest(
                    region_id=spec.region, security_group_id=group_id, inner_access_policy="Drop"
                ),
                what,
            )
        changes.append(f"ModifySecurityGroupPolicy {group_id} InnerAccessPolicy=Drop")

    if missing and not plan:
        for chunk in (missing[i : i + 100] for i in range(0, len(missing), 100)):
            perms = [
                ecs_models.AuthorizeSecurityGroupEgressRequestPermissions(
                    policy=r.policy.lower(),
                    priority=str(r.priority),
                    ip_protocol=r.ip_protocol,
                    port_range=r.port_range,
                    dest_cidr_ip=r.cidr,
                    description=r.description,
                )
                for r in chunk
            ]
            ecs_call(
                "AuthorizeSecurityGroupEgress",
                ecs.authorize_security_group_egress,
                ecs_models.AuthorizeSecurityGroupEgressRequest(
                    region_id=spec.region, security_group_id=group_id, permissions=perms
                ),
                what,
            )
    changes += [f"AuthorizeSecurityGroupEgress {group_id} {r.label()}" for r in missing]
    if extra and not plan:
        ecs_call(
            "RevokeSecurityGroupEgress",
            ecs.revoke_security_group_egress,
            ecs_models.RevokeSecurityGroupEgressRequest(
                region_id=spec.region,
                security_group_id=group_id,
                security_group_rule_id=[p.security_group_rule_id for p in extra],
            ),
            what,
        )
    changes += [f"RevokeSecurityGroupEgress {group_id} {p.security_group_rule_id} (not in the spec)" for p in extra]
    if inbound and not plan:
        ecs_call(
            "RevokeSecurityGroup",
            ecs.revoke_security_group,
            ecs_models.RevokeSecurityGroupRequest(
                region_id=spec.region,
                security_group_id=group_id,
                security_group_rule_id=[p.security_group_rule_id for p in inbound],
            ),
            what,
        )
    changes += [
        f"RevokeSecurityGroup {group_id} {p.security_group_rule_id} (inbound Accept: builders need none)"
        for p in inbound
    ]
    return changes


@task(name="link", task_run_name="link {spec.name}", retries=0)
def link(spec: Spec) -> LinkOutcome:
    """Converge the build link's managed security group (api mode).

    Args:
        spec: the pipeline spec.

    A group that already existed and differs from the spec (e.g. an egress rule added by hand) is
    reported as drift (a ``drift-<link>`` artifact and an ``acrvpc.drift.detected`` event) before
    it is converged.

    Transient failures are retried inside the task (:func:`retry_stage`), never by Prefect: the
    task runs in the flow's link/ENI transaction. A group created by an attempt that then failed is
    this run's all the same: the outcome's ``changes`` name its ``CreateSecurityGroup`` (the flow's
    rollback deletes it if the ENI stage fails), and when the stage fails for good it deletes that
    group itself (no ENI can use it yet) before raising.

    Returns:
        LinkOutcome: the security group id and the writes made.

    Raises:
        PipelineError: ``LINK_AMBIGUOUS`` or a fatal ECS error, with its fix.
    """
    from tasks.drift import DriftReporter

    created: list[str] = []

    def attempt(number: int) -> LinkOutcome:
        # a group an earlier attempt created has not drifted: it is only half converged
        on_drift = None if created else DriftReporter(spec, "security group")
        return ensure_security_group(cloud.cloud_clients(spec).ecs, spec, on_drift=on_drift, on_create=created.append)

    try:
        out = retry_stage("link", attempt)
    except Exception:
        if created:
            _undo_created_group(spec, created[0])
        raise
    if created and not any(change.startswith("CreateSecurityGroup") for change in out.changes):
        out = out.model_copy(update={"changes": [f"CreateSecurityGroup {created[0]}", *out.changes]})
    return out


def _undo_created_group(spec: Spec, group_id: str) -> None:
    """Delete the group this run's link stage created, after the stage failed for good (best effort)."""
    from tasks.teardown import undo_created_link

    try:
        undo_created_link(cloud.cloud_clients(spec).ecs, spec, group_id)
    except Exception as exc:  # noqa: BLE001 - the stage's own failure is the one to report
        run_logger().warning(
            "could not delete security group %s that the failed link stage created (%s): it stays "
            "tagged, so a rerun adopts it and `acrvpc teardown` finds it",
            group_id,
            explain(exc)[:300],
        )
