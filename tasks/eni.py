"""Stage "eni" (api mode): the elastic network interface the registry's builders attach.

Calls: ECS ``DescribeNetworkInterfaces`` (by vSwitch and the link tag, then by id while waiting) and
``DescribeNetworkInterfacePermissions`` (reads); ``CreateNetworkInterface``,
``ModifyNetworkInterfaceAttribute`` (security-group drift) and ``CreateNetworkInterfacePermission``
(``InstanceAttach`` for the registry's build service account) (writes, only for what differs).

Once the build service may attach the ENI, the registry attaches it: ``Available`` ->
``Attaching`` -> ``InUse``. The stage waits for ``InUse``, polling with a backoff from 0.5 s to 5 s.
An ENI that falls back to ``Available`` after ``Attaching`` failed to attach (``ENI_ATTACH_FAILED``);
one still not ``InUse`` at the deadline is ``ENI_ATTACH_TIMEOUT``. A converged ENI costs two reads
and no write.

Plan mode (``plan=True``, used by ``acrvpc plan``): the same reads, each write the stage would make
recorded in ``changes`` (in the same words as a real run) without calling it, and no waiting. An ENI
still to be created is named :data:`PLANNED_ENI` (its permission is then planned without a read).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from alibabacloud_ecs20140526 import models as ecs_models

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError
from acrvpc.cloud.waiting import wait_until
from acrvpc.domain.outcomes import EniOutcome
from acrvpc.domain.spec import Spec
from acrvpc.lazy_prefect import task
from tasks.ecs_common import create_with_token, ecs_call, retry_stage
from tasks.link import GROUP_GONE_CODE, link_group_gone_fix

PERMISSION = "InstanceAttach"
_LIVE_PERMISSION_STATES = {"granted", "pending"}
PLANNED_ENI = "<new network interface>"  # plan mode: the id of an ENI a run would create
PLANNED_PERMISSION = "<new permission>"


def eni_name(spec: Spec) -> str:
    """The ENI's name.

    Args:
        spec: the pipeline spec.

    Returns:
        ``acr-vpc-build-<spec.name>``.
    """
    return spec.resource_name


def _ids(wrapper: Any, attr: str) -> list[str]:
    return list(getattr(wrapper, attr, None) or []) if wrapper else []


def find_network_interface(ecs: Any, spec: Spec) -> Any | None:
    """Look up the ENI tagged for this link in the spec's vSwitch.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.

    Returns:
        The ENI's ``DescribeNetworkInterfaces`` item (SDK model, used only inside this stage), or ``None``.

    Raises:
        PipelineError: ``ENI_AMBIGUOUS`` when several ENIs carry the tag.
    """
    key, value = spec.tag
    request = ecs_models.DescribeNetworkInterfacesRequest(
        region_id=spec.region,
        v_switch_id=spec.network.vswitch_id,
        max_results=100,
        tag=[ecs_models.DescribeNetworkInterfacesRequestTag(key=key, value=value)],
    )
    body = ecs_call(
        "DescribeNetworkInterfaces", ecs.describe_network_interfaces, request, f"vSwitch {spec.network.vswitch_id}"
    )
    found = body.network_interface_sets.network_interface_set if body.network_interface_sets else []
    if len(found) > 1:
        ids = sorted(n.network_interface_id for n in found)
        raise PipelineError(
            f"{len(ids)} network interfaces in {spec.network.vswitch_id} carry the tag {key}={value}: {', '.join(ids)}",
            code="ENI_AMBIGUOUS",
            fix=f"keep the one the registry uses, delete the others (or remove their {key} tag), then rerun",
        )
    return found[0] if found else None


def _describe_one(ecs: Any, spec: Spec, eni_id: str) -> Any | None:
    request = ecs_models.DescribeNetworkInterfacesRequest(region_id=spec.region, network_interface_id=[eni_id])
    body = ecs_call("DescribeNetworkInterfaces", ecs.describe_network_interfaces, request, f"ENI {eni_id}")
    found = body.network_interface_sets.network_interface_set if body.network_interface_sets else []
    return found[0] if found else None


def ensure_permission(ecs: Any, spec: Spec, eni_id: str, account_id: int, *, plan: bool = False) -> list[str]:
    """Grant ``InstanceAttach`` on the ENI to ``account_id`` unless a Granted or Pending grant exists.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec (its region).
        eni_id: the build ENI (:data:`PLANNED_ENI` in plan mode for one not yet created).
        account_id: the registry's build service account.
        plan: read only; return the line of the grant a run would make without making it.

    Returns:
        One line per write made, or in plan mode to be made (empty when the grant exists).

    Raises:
        PipelineError: a fatal ECS error, with its code and fix.
    """
    planned = [
        f"CreateNetworkInterfacePermission {PLANNED_PERMISSION} ({PERMISSION} for account {account_id} on {eni_id})"
    ]
    if plan and eni_id == PLANNED_ENI:
        return planned
    what = f"ENI {eni_id}"
    body = ecs_call(
        "DescribeNetworkInterfacePermissions",
        ecs.describe_network_interface_permissions,
        ecs_models.DescribeNetworkInterfacePermissionsRequest(
            region_id=spec.region, network_interface_id=eni_id, page_size=100
        ),
        what,
    )
    perms = (
        body.network_interface_permissions.network_interface_permission if body.network_interface_permissions else []
    )
    for p in perms:
        if (
            int(p.account_id or 0) == account_id
            and p.permission == PERMISSION
            and (p.permission_state or "").lower() in _LIVE_PERMISSION_STATES
        ):
            return []
    if plan:
        return planned
    body = ecs_call(
        "CreateNetworkInterfacePermission",
        ecs.create_network_interface_permission,
        ecs_models.CreateNetworkInterfacePermissionRequest(
            region_id=spec.region, network_interface_id=eni_id, account_id=account_id, permission=PERMISSION
        ),
        what,
    )
    perm = body.network_interface_permission
    return [
        f"CreateNetworkInterfacePermission {perm.network_interface_permission_id} "
        f"({PERMISSION} for account {account_id} on {eni_id})"
    ]


def wait_in_use(
    ecs: Any, spec: Spec, eni_id: str, status: str, *, timeout_s: float, sleep: Callable[[float], None]
) -> Any:
    """Poll the ENI until it is ``InUse``, backing off from 0.5 s to 5 s.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec.
        eni_id: the build ENI.
        status: its status when the stage last read it.
        timeout_s: the deadline, in seconds of sleeping (or wall time, whichever is larger).
        sleep: the sleep function between polls.

    Returns:
        The ENI's last ``DescribeNetworkInterfaces`` item (SDK model, used only inside this stage).

    Raises:
        PipelineError: ``ENI_ATTACH_FAILED`` (back to Available after Attaching, or gone) or
            ``ENI_ATTACH_TIMEOUT``.
    """
    seen_attaching = status == "Attaching"

    def poll() -> Any | None:
        nonlocal seen_attaching, status
        item = _describe_one(ecs, spec, eni_id)
        if item is None:
            raise PipelineError(
                f"ENI {eni_id} disappeared while waiting for the registry to attach it",
                code="ENI_ATTACH_FAILED",
                fix="check that nothing else deletes it, then rerun",
            )
        status = item.status or ""
        if status == "InUse":
            return item
        if status == "Attaching":
            seen_attaching = True
        elif status == "Available" and seen_attaching:
            raise PipelineError(
                f"ENI {eni_id} in {spec.network.vswitch_id} went back to Available after Attaching: the registry "
                f"could not attach it",
                code="ENI_ATTACH_FAILED",
                fix="check that the vSwitch's zone supports VPC builds (run preflight) and that "
                "link.build_service_account_id is the registry's build service account, then rerun",
            )
        return None

    def timed_out() -> PipelineError:
        return PipelineError(
            f"ENI {eni_id} is still {status} after {timeout_s:.0f} s, not InUse",
            code="ENI_ATTACH_TIMEOUT",
            fix="check link.build_service_account_id and the registry's VPC build settings, then rerun "
            "(the ENI and its permission are kept)",
            retryable=False,
        )

    return wait_until(poll, what=f"ENI {eni_id} to be InUse", timeout_s=timeout_s, sleep=sleep, timeout_error=timed_out)


def ensure_network_interface(
    ecs: Any,
    spec: Spec,
    security_group_id: str,
    *,
    timeout_s: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    plan: bool = False,
    on_drift: Callable[[str, list[str]], None] | None = None,
    on_create: Callable[[str], None] | None = None,
) -> EniOutcome:
    """Find or create the link's ENI, keep it in the link's group, let the registry attach it, wait.

    Args:
        ecs: an ECS 2014-05-26 client (from :func:`acrvpc.cloud.clients.ecs_client`).
        spec: the pipeline spec (network.vswitch_id, link.build_service_account_id).
        security_group_id: the link's security group (from the link stage).
        timeout_s: how long to wait for ``InUse``.
        sleep: the sleep function between polls (tests pass one that advances the sandbox clock).
        plan: read only, record the writes a run would make in ``changes`` without making them, and do
            not wait (an ENI to be created is named :data:`PLANNED_ENI`, with status ``planned``).
        on_drift: told how an ENI that already existed differs from the spec: its security groups
            before they are changed back; a missing attach permission as it is granted again.
        on_create: told the ENI's id as soon as this call has created it.

    Returns:
        EniOutcome with the ENI id, status (``InUse``), private IP and one ``changes`` entry per write.

    Raises:
        PipelineError: ``ENI_AMBIGUOUS``, ``ENI_NO_SERVICE_ACCOUNT``, ``ENI_ATTACH_FAILED``,
            ``ENI_ATTACH_TIMEOUT``, or a fatal ECS code such as ``InvalidVSwitchId.IpNotEnough``;
            ``InvalidSecurityGroupId.NotFound`` names the link's group (not ``gitlab.security_group_id``).
    """
    account_id = spec.link.build_service_account_id
    if account_id is None:
        raise PipelineError(
            "the ENI stage needs the registry's build service account id",
            code="ENI_NO_SERVICE_ACCOUNT",
            fix="set link.build_service_account_id in the spec (or use link.mode: console)",
        )
    changes: list[str] = []
    group_fix = {GROUP_GONE_CODE: link_group_gone_fix(spec, security_group_id)}
    item = find_network_interface(ecs, spec)
    if item is None and plan:
        changes.append(f"CreateNetworkInterface {PLANNED_ENI} (<private IP from {spec.network.vswitch_id}>)")
        changes += ensure_permission(ecs, spec, PLANNED_ENI, account_id, plan=True)
        return EniOutcome(
            network_interface_id=PLANNED_ENI,
            status="planned",
            resources={"eni": PLANNED_ENI},
            changes=changes,
            notes=["a run would wait until the registry attaches the new ENI (InUse)"],
        )
    existed = item is not None
    if item is None:
        key, value = spec.tag

        def create(token: str) -> Any:
            request = ecs_models.CreateNetworkInterfaceRequest(
                region_id=spec.region,
                v_switch_id=spec.network.vswitch_id,
                security_group_id=security_group_id,
                network_interface_name=eni_name(spec),
                description=f"Managed by acr-vpc-build for link {spec.name}: the registry's build ENI",
                tag=[ecs_models.CreateNetworkInterfaceRequestTag(key=key, value=value)],
                client_token=token,
            )
            return ecs_call(
                "CreateNetworkInterface",
                ecs.create_network_interface,
                request,
                f"vSwitch {spec.network.vswitch_id}",
                fixes=group_fix,
            )

        described: dict[str, Any] = {}

        def unusable(body: Any) -> tuple[str, str | None]:
            # the answer of a remembered token may describe the ENI as it was created: ask ECS now
            eni_id = body.network_interface_id
            now = described[eni_id] = _describe_one(ecs, spec, eni_id)
            if now is None:
                return eni_id, "not found"
            return eni_id, "Deleting" if now.status == "Deleting" else None

        item = create_with_token(
            "eni", (spec.name, spec.network.vswitch_id, security_group_id), create, unusable, "link's ENI"
        )
        item = described.get(item.network_interface_id) or item
        changes.append(f"CreateNetworkInterface {item.network_interface_id} ({item.private_ip_address})")
        if on_create is not None:
            on_create(item.network_interface_id)
    eni_id = item.network_interface_id
    groups = _ids(item.security_group_ids, "security_group_id")
    if groups != [security_group_id]:
        if existed and on_drift is not None:
            on_drift(
                eni_id,
                [f"security groups are {', '.join(groups) or 'none'} (the spec's link needs only {security_group_id})"],
            )
        if not plan:
            ecs_call(
                "ModifyNetworkInterfaceAttribute",
                ecs.modify_network_interface_attribute,
                ecs_models.ModifyNetworkInterfaceAttributeRequest(
                    region_id=spec.region, network_interface_id=eni_id, security_group_id=[security_group_id]
                ),
                f"ENI {eni_id}",
                fixes=group_fix,
            )
        changes.append(
            f"ModifyNetworkInterfaceAttribute {eni_id} SecurityGroupId={security_group_id} "
            f"(was {', '.join(groups) or 'none'})"
        )
    granted = ensure_permission(ecs, spec, eni_id, account_id, plan=plan)
    if granted and existed and on_drift is not None:
        on_drift(eni_id, [f"the registry's attach permission was missing ({change})" for change in granted])
    changes += granted
    status, private_ip = item.status or "", item.private_ip_address or ""
    if plan:
        notes = [] if status == "InUse" else [f"ENI {eni_id} is {status}: a run would wait until it is InUse"]
        return EniOutcome(
            network_interface_id=eni_id,
            status=status,
            private_ip=private_ip,
            resources={"eni": eni_id},
            changes=changes,
            notes=notes,
        )
    if status != "InUse":
        final = wait_in_use(ecs, spec, eni_id, status, timeout_s=timeout_s, sleep=sleep)
        status, private_ip = final.status, final.private_ip_address or private_ip
    return EniOutcome(
        network_interface_id=eni_id, status=status, private_ip=private_ip, resources={"eni": eni_id}, changes=changes
    )


@task(name="eni", task_run_name="eni {spec.name}", retries=0)
def eni(spec: Spec, security_group_id: str) -> EniOutcome:
    """Converge the build ENI and wait until the registry has attached it (api mode).

    Transient failures are retried inside the task (:func:`tasks.ecs_common.retry_stage`), never by
    Prefect: the task runs in the flow's link/ENI transaction, which Prefect would roll back (deleting
    the link's group) before a retry of the task. An ENI created by an attempt that then failed is
    adopted by the next attempt, and still named in ``changes``.

    Args:
        spec: the pipeline spec.
        security_group_id: the link's security group, from the link stage.

    Returns:
        EniOutcome: the ENI id, its status (InUse), private IP and the writes made.

    Raises:
        PipelineError: ``ENI_AMBIGUOUS``, ``ENI_ATTACH_FAILED``, ``ENI_ATTACH_TIMEOUT`` or a fatal ECS error.
    """
    from tasks.drift import DriftReporter

    created: list[str] = []

    def attempt(number: int) -> EniOutcome:
        # an ENI an earlier attempt created has not drifted: it is only half set up
        on_drift = None if created else DriftReporter(spec, "network interface")
        return ensure_network_interface(
            cloud.cloud_clients(spec).ecs, spec, security_group_id, on_drift=on_drift, on_create=created.append
        )

    out = retry_stage("eni", attempt)
    if created and not any(change.startswith("CreateNetworkInterface ") for change in out.changes):
        out = out.model_copy(update={"changes": [f"CreateNetworkInterface {created[0]}", *out.changes]})
    return out
