"""Stage "teardown": delete the build link's ECS resources, ENIs first, then security groups.

Calls: ECS ``DescribeNetworkInterfaces``, ``DescribeSecurityGroups`` (by VPC and the link tag, then
by id while waiting) and ``DescribeNetworkInterfacePermissions`` (reads);
``DeleteNetworkInterfacePermission``, ``DeleteNetworkInterface`` and ``DeleteSecurityGroup`` (writes).

Only resources tagged ``acr-vpc-build:link=<spec.name>`` are touched: a delete function given the
id of an untagged resource refuses (``TEARDOWN_NOT_TAGGED``). The registry side is NOT deleted:
Container Registry namespaces, repositories, build rules, code-source bindings and images stay
(they hold images and history, and removing them is a registry decision, not a network one).

Order and waits (ECS deletes asynchronously, ``alibaba-api.md`` §2.4, §2.7):

1. each tagged ENI: revoke its ``InstanceAttach`` permissions (``Force``), so the registry detaches
   it (``InUse`` -> ``Detaching`` -> ``Available``); delete it once ``Available``; wait until it is
   gone (``Deleting`` -> not found), re-issuing the delete if it falls back to ``Available``;
2. each tagged security group: delete it, retrying ``DependencyViolation`` (something still uses
   it) with a backoff until a deadline.

The delete functions are also the link/ENI transaction's rollback hooks, so each one is safe with
an id that was only partly set up or is already gone (``InvalidEniId.NotFound``,
``InvalidSecurityGroupId.NotFound`` and an empty describe all mean "done"), and a rerun of a
finished teardown makes no write.

Assumptions:
- ``Force=true`` on ``DeleteNetworkInterfacePermission`` detaches an attached ENI (as on AWS, whose
  API this one mirrors); without it the permission of an attached ENI may not be deletable.
- A permission that is already ``Revoking``/``Revoked`` needs nothing more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from alibabacloud_ecs20140526 import models as ecs_models
from prefect import task

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, PipelineError, error_code
from acrvpc.cloud.paging import paginate
from acrvpc.cloud.waiting import wait_until
from acrvpc.domain.outcomes import StageOutcome
from acrvpc.domain.spec import Spec
from tasks.ecs_common import ecs_call

TIMEOUT_S = 300.0
ENI_GONE = {"InvalidEniId.NotFound"}
PERMISSION_GONE = {"InvalidNetworkInterfacePermissionId.NotFound", "InvalidEniId.NotFound"}
GROUP_GONE = {"InvalidSecurityGroupId.NotFound"}
KEPT = "Container Registry resources are kept: namespaces, repositories, build rules, code-source bindings and images"


def _tagged(tags: Any, spec: Spec) -> bool:
    key, value = spec.tag
    return any(t.tag_key == key and t.tag_value == value for t in (tags.tag or [] if tags else []))


def _refuse_untagged(what: str, spec: Spec) -> PipelineError:
    key, value = spec.tag
    return PipelineError(
        f"{what} does not carry the tag {key}={value}: teardown deletes only what the pipeline made for this link",
        code="TEARDOWN_NOT_TAGGED",
        fix=f"delete it yourself if it should go, or check that the spec's name is {value!r}",
    )


def find_link_resources(ecs: Any, spec: Spec) -> dict[str, list[str]]:
    """List what is tagged for this link in the spec's region and VPC.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec (region, network.vpc_id, name).

    Returns:
        ``{"network_interfaces": [eni ids], "security_groups": [group ids]}``, each sorted.

    Raises:
        PipelineError: a fatal ECS error, with its code and fix.
    """
    key, value = spec.tag
    vpc = spec.network.vpc_id

    def enis(token: str | None) -> Any:
        request = ecs_models.DescribeNetworkInterfacesRequest(
            region_id=spec.region,
            vpc_id=vpc,
            max_results=100,
            next_token=token,
            tag=[ecs_models.DescribeNetworkInterfacesRequestTag(key=key, value=value)],
        )
        return ecs_call("DescribeNetworkInterfaces", ecs.describe_network_interfaces, request, f"VPC {vpc}")

    def groups(token: str | None) -> Any:
        request = ecs_models.DescribeSecurityGroupsRequest(
            region_id=spec.region,
            vpc_id=vpc,
            max_results=100,
            next_token=token,
            tag=[ecs_models.DescribeSecurityGroupsRequestTag(key=key, value=value)],
        )
        return ecs_call("DescribeSecurityGroups", ecs.describe_security_groups, request, f"VPC {vpc}")

    eni_items = paginate(
        enis,
        lambda b: b.network_interface_sets.network_interface_set if b.network_interface_sets else [],
        what=f"DescribeNetworkInterfaces in VPC {vpc}",
    )
    group_items = paginate(
        groups,
        lambda b: b.security_groups.security_group if b.security_groups else [],
        what=f"DescribeSecurityGroups in VPC {vpc}",
    )
    return {
        "network_interfaces": sorted(n.network_interface_id for n in eni_items if _tagged(n.tags, spec)),
        "security_groups": sorted(g.security_group_id for g in group_items if _tagged(g.tags, spec)),
    }


def _describe_eni(ecs: Any, spec: Spec, eni_id: str) -> Any | None:
    request = ecs_models.DescribeNetworkInterfacesRequest(region_id=spec.region, network_interface_id=[eni_id])
    try:
        body = ecs_call("DescribeNetworkInterfaces", ecs.describe_network_interfaces, request, f"ENI {eni_id}")
    except Exception as exc:
        if error_code(exc) in ENI_GONE:
            return None
        raise
    found = body.network_interface_sets.network_interface_set if body.network_interface_sets else []
    return next((n for n in found if n.network_interface_id == eni_id), None)


def revoke_permissions(ecs: Any, spec: Spec, eni_id: str) -> list[str]:
    """Delete every live ``InstanceAttach`` permission of an ENI (``Force``: detach it too).

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec (its region).
        eni_id: the ENI.

    Returns:
        One line per permission deleted (empty when none was live or the ENI is gone).

    Raises:
        PipelineError: a fatal ECS error, with its code and fix.
    """
    what = f"ENI {eni_id}"
    request = ecs_models.DescribeNetworkInterfacePermissionsRequest(
        region_id=spec.region, network_interface_id=eni_id, page_size=100
    )
    try:
        body = ecs_call(
            "DescribeNetworkInterfacePermissions", ecs.describe_network_interface_permissions, request, what
        )
    except Exception as exc:
        if error_code(exc) in ENI_GONE:
            return []
        raise
    perms = (
        body.network_interface_permissions.network_interface_permission if body.network_interface_permissions else []
    )
    changes = []
    for p in perms:
        if (p.permission_state or "").lower() in ("revoking", "revoked"):
            continue
        try:
            ecs_call(
                "DeleteNetworkInterfacePermission",
                ecs.delete_network_interface_permission,
                ecs_models.DeleteNetworkInterfacePermissionRequest(
                    region_id=spec.region, network_interface_permission_id=p.network_interface_permission_id, force=True
                ),
                what,
            )
        except Exception as exc:
            if error_code(exc) in PERMISSION_GONE:
                continue
            raise
        changes.append(
            f"DeleteNetworkInterfacePermission {p.network_interface_permission_id} "
            f"({p.permission} for account {p.account_id} on {eni_id})"
        )
    return changes


def delete_network_interface(
    ecs: Any, spec: Spec, eni_id: str, *, timeout_s: float = TIMEOUT_S, sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """Delete one ENI tagged for this link: revoke its permissions, wait out Detaching, delete, wait until gone.

    Safe to call with an ENI that is already gone, or only partly set up (no permission yet).

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.
        eni_id: the ENI to delete.
        timeout_s: how long to wait for it to detach and disappear.
        sleep: the sleep function between polls (tests pass one that advances the sandbox clock).

    Returns:
        One line per write made (empty when the ENI was already gone).

    Raises:
        PipelineError: ``TEARDOWN_NOT_TAGGED`` (the ENI is not this link's), ``ENI_DELETE_TIMEOUT``,
            or a fatal ECS error with its code and fix.
    """
    item = _describe_eni(ecs, spec, eni_id)
    if item is None:
        return []
    if not _tagged(item.tags, spec):
        raise _refuse_untagged(f"ENI {eni_id}", spec)
    changes = revoke_permissions(ecs, spec, eni_id)
    if changes:
        item = _describe_eni(ecs, spec, eni_id)
    first = True

    def settle() -> list[str] | None:
        """Delete the ENI once Available (again, if it fell back); the changes once it is gone, else None."""
        nonlocal item, first
        if not first:
            item = _describe_eni(ecs, spec, eni_id)
        first = False
        while item is not None and item.status == "Available":
            try:
                ecs_call(
                    "DeleteNetworkInterface",
                    ecs.delete_network_interface,
                    ecs_models.DeleteNetworkInterfaceRequest(region_id=spec.region, network_interface_id=eni_id),
                    f"ENI {eni_id}",
                )
            except Exception as exc:
                if error_code(exc) in ENI_GONE:
                    return changes
                if error_code(exc) != "InvalidOperation.InvalidEniState":
                    raise
                break
            line = f"DeleteNetworkInterface {eni_id}"
            if line not in changes:
                changes.append(line)
            item = _describe_eni(ecs, spec, eni_id)
        return changes if item is None else None

    def timed_out() -> PipelineError:
        status = (item.status if item is not None else "") or ""
        return PipelineError(
            f"ENI {eni_id} is still {status or 'present'} after {timeout_s:.0f} s of teardown",
            code="ENI_DELETE_TIMEOUT",
            fix="look at the ENI in the ECS console (it must be Available to be deleted: detach it from any "
            "instance), then rerun teardown",
        )

    return wait_until(
        settle, what=f"ENI {eni_id} to be deleted", timeout_s=timeout_s, sleep=sleep, timeout_error=timed_out
    )


def _describe_group(ecs: Any, spec: Spec, group_id: str) -> Any | None:
    request = ecs_models.DescribeSecurityGroupsRequest(region_id=spec.region, security_group_ids=json.dumps([group_id]))
    try:
        body = ecs_call("DescribeSecurityGroups", ecs.describe_security_groups, request, f"security group {group_id}")
    except Exception as exc:
        if error_code(exc) in GROUP_GONE:
            return None
        raise
    found = body.security_groups.security_group if body.security_groups else []
    return next((g for g in found if g.security_group_id == group_id), None)


def _group_users(ecs: Any, spec: Spec, group_id: str) -> list[str]:
    request = ecs_models.DescribeNetworkInterfacesRequest(
        region_id=spec.region, security_group_id=group_id, max_results=100
    )
    body = ecs_call("DescribeNetworkInterfaces", ecs.describe_network_interfaces, request, f"security group {group_id}")
    found = body.network_interface_sets.network_interface_set if body.network_interface_sets else []
    return [n.instance_id or n.network_interface_id for n in found]


def delete_security_group(
    ecs: Any, spec: Spec, group_id: str, *, timeout_s: float = TIMEOUT_S, sleep: Callable[[float], None] = time.sleep
) -> list[str]:
    """Delete one security group tagged for this link, waiting while something still uses it.

    Safe to call with a group that is already gone.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.
        group_id: the group to delete.
        timeout_s: how long to retry ``DependencyViolation`` (ENIs still detaching or deleting).
        sleep: the sleep function between attempts.

    Returns:
        One line per write made (empty when the group was already gone).

    Raises:
        PipelineError: ``TEARDOWN_NOT_TAGGED``, ``DependencyViolation`` past the deadline (naming what
            still uses the group), or a fatal ECS error with its code and fix.
    """
    group = _describe_group(ecs, spec, group_id)
    if group is None:
        return []
    if not _tagged(group.tags, spec):
        raise _refuse_untagged(f"security group {group_id}", spec)

    def attempt() -> list[str] | None:
        try:
            ecs_call(
                "DeleteSecurityGroup",
                ecs.delete_security_group,
                ecs_models.DeleteSecurityGroupRequest(region_id=spec.region, security_group_id=group_id),
                f"security group {group_id}",
            )
            return [f"DeleteSecurityGroup {group_id}"]
        except Exception as exc:
            code = error_code(exc)
            if code in GROUP_GONE:
                return []
            if code != "DependencyViolation":
                raise
        return None

    def timed_out() -> PipelineError:
        users = ", ".join(_group_users(ecs, spec, group_id)) or "unknown resources"
        return PipelineError(
            f"security group {group_id} is still in use after {timeout_s:.0f} s (by {users})",
            code="DependencyViolation",
            fix="move or delete what still uses the group (teardown deletes only ENIs tagged for this link), "
            "then rerun teardown",
        )

    return wait_until(
        attempt,
        what=f"security group {group_id} to be deleted",
        timeout_s=timeout_s,
        sleep=sleep,
        timeout_error=timed_out,
    )


def teardown_link(
    ecs: Any, spec: Spec, *, timeout_s: float = TIMEOUT_S, sleep: Callable[[float], None] = time.sleep
) -> StageOutcome:
    """Delete everything tagged for this link in the spec's VPC: ENIs first, then security groups.

    Container Registry resources (namespaces, repositories, build rules, bindings) are not touched.

    Args:
        ecs: an ECS 2014-05-26 client (from :func:`acrvpc.cloud.clients.ecs_client`).
        spec: the pipeline spec (region, network.vpc_id, name).
        timeout_s: per resource, how long to wait for detaching, deleting and dependencies.
        sleep: the sleep function between polls.

    Returns:
        StageOutcome (stage ``teardown``): ``resources`` lists what was found and deleted,
        ``changes`` one line per write (none when nothing was left).

    Raises:
        PipelineError: ``ENI_DELETE_TIMEOUT``, ``DependencyViolation`` or a fatal ECS error.
    """
    found = find_link_resources(ecs, spec)
    changes: list[str] = []
    for eni_id in found["network_interfaces"]:
        changes += delete_network_interface(ecs, spec, eni_id, timeout_s=timeout_s, sleep=sleep)
    for group_id in found["security_groups"]:
        changes += delete_security_group(ecs, spec, group_id, timeout_s=timeout_s, sleep=sleep)
    resources = {kind: ", ".join(ids) for kind, ids in found.items() if ids}
    key, value = spec.tag
    notes = [KEPT] if resources else [f"nothing tagged {key}={value} in {spec.network.vpc_id}", KEPT]
    return StageOutcome(stage="teardown", resources=resources, changes=changes, notes=notes)


@task(name="teardown", task_run_name="teardown {spec.name}", **RETRY)
def teardown(spec: Spec) -> StageOutcome:
    """Delete the build link's ENIs and security groups tagged for the spec (registry resources stay).

    Args:
        spec: the pipeline spec.

    Returns:
        StageOutcome: what was deleted (``resources``) and the writes made (``changes``).

    Raises:
        PipelineError: ``ENI_DELETE_TIMEOUT``, ``DependencyViolation`` or a fatal ECS error, with its fix.
    """
    return teardown_link(cloud.cloud_clients(spec).ecs, spec)


def undo_created_link(ecs: Any, spec: Spec, group_id: str) -> list[str]:
    """Delete a security group that this run created, and the link's ENIs that use it, ENIs first.

    Every ENI tagged for the link that uses the group was created in this run too (it could not exist
    before its group), so those ENIs and the group go. ENIs in other groups, and other groups, stay.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.
        group_id: the group the link stage created in this run.

    Returns:
        One line per write made.

    Raises:
        PipelineError: ``TEARDOWN_NOT_TAGGED``, ``ENI_DELETE_TIMEOUT``, ``DependencyViolation`` or a fatal ECS error.
    """
    changes: list[str] = []
    for eni_id in find_link_resources(ecs, spec).get("network_interfaces", []):
        eni = _describe_eni(ecs, spec, eni_id)
        groups = (eni.security_group_ids.security_group_id or []) if eni is not None and eni.security_group_ids else []
        if group_id in groups:
            changes += delete_network_interface(ecs, spec, eni_id)
    return changes + delete_security_group(ecs, spec, group_id)


def rollback_link(txn: Any) -> None:
    """``on_rollback`` hook of the link task: undo what THIS run created, ENIs first.

    Prefect runs it when the flow's link/ENI transaction fails: the ENI stage failed for good (the
    link and ENI tasks retry transient failures inside the task, never through Prefect, whose task
    retries would roll the transaction back before each retry). The flow records
    ``created_security_group`` (and ``spec``) on the transaction when the link stage created the
    group in this run (in any of its attempts); then that group and the link's ENIs in it are deleted
    (:func:`undo_created_link`). A group that existed before the run is left alone; an ENI this run
    created in a pre-existing group stays tagged, so a rerun adopts it and teardown finds it. The
    transaction's task results are not committed either, so a rerun of the same flow run (Retry in
    the UI) runs link and ENI again instead of taking the deleted group from the cache. A run whose
    process is being stopped (``terminated``: its worker died, Ctrl-C) rolls nothing back: what it
    made is tagged, and the rerun or the failed-over run adopts it.

    Args:
        txn: the Prefect transaction passed to rollback hooks.
    """
    from acrvpc.cloud import clients as cloud

    group_id = txn.get("created_security_group", None)
    spec = txn.get("spec", None)
    if not group_id or spec is None or txn.get("terminated", False):
        return
    undo_created_link(cloud.cloud_clients(spec).ecs, spec, group_id)
