"""Stage "preflight": every prerequisite of the procedure, checked from the cloud's own state. No writes, ever.

:func:`observe` runs the reads, concurrently where independent (CR GetInstance, GetRepository and
GetRepoSourceCodeRepo; VPC DescribeVpcAttribute, DescribeVSwitchAttributes, DescribeVirtualBorderRouters,
DescribeRouteEntryList; ECS DescribeInstances, DescribeSecurityGroupAttribute; GitLab through
:func:`tasks.gitlab_token.validate_token`); a failing read never aborts the others and becomes a failed
check naming its code. :func:`~tasks.preflight_checks.evaluate` (in :mod:`tasks.preflight_checks`) turns
what was read into checks with stable ids (:data:`CHECK_IDS`), each with a detail and the exact fix.
The task publishes a table artifact and raises ``PREFLIGHT_FAILED`` so the flow stops before any write.
``acrvpc preflight`` calls :func:`run_preflight`; its ``--fix`` lives in :mod:`tasks.preflight_fix`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_vpc20160428 import models as vpc_models

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.clients import CloudClients
from acrvpc.cloud.errors import RETRY, CrBusinessError, PipelineError, check_cr
from acrvpc.cloud.paging import paginate
from acrvpc.domain.outcomes import PreflightOutcome
from acrvpc.domain.spec import GitLabAccess, Spec
from acrvpc.lazy_prefect import (  # Prefect loads on first use: `acrvpc preflight` never needs it
    create_table_artifact,
    get_run_logger,
    task,
)
from tasks.gitlab_token import validate_token
from tasks.preflight_checks import CHECK_IDS, Observation, Read, evaluate

__all__ = [
    "CHECK_IDS",
    "Observation",
    "Read",
    "artifact_rows",
    "evaluate",
    "observe",
    "preflight",
    "preflight_error",
    "read_gitlab_host",
    "run_preflight",
]

_REPO_MISSING = {"REPO_NOT_EXIST", "NAMESPACE_NOT_EXIST"}
_NOT_BOUND = {"REPO_SOURCE_CODE_NOT_EXIST", "REPO_SOURCE_CODE_REPO_NOT_EXIST", "SOURCE_CODE_REPO_NOT_EXIST"}
_MAX_WORKERS = 8


# -- observation ---------------------------------------------------------------------------------
def _read(fn: Callable[..., Any], *args: Any) -> Read:
    try:
        return Read(fn(*args))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a check
        return Read(error=exc)


def _ingress_rules(ecs: Any, spec: Spec, group_id: str) -> list[dict[str, Any]]:
    def fetch(token: str | None) -> dict[str, Any]:
        req = ecs_models.DescribeSecurityGroupAttributeRequest(
            region_id=spec.region, security_group_id=group_id, direction="ingress", next_token=token
        )
        return ecs.describe_security_group_attribute(req).body.to_map()

    return [
        {**p, "SecurityGroupId": group_id}
        for p in paginate(
            fetch,
            lambda body: (body.get("Permissions") or {}).get("Permission"),
            what=f"DescribeSecurityGroupAttribute of {group_id}",
        )
    ]


def read_gitlab_host(ecs: Any, spec: Spec) -> dict[str, Any]:
    """The GitLab ECS (by private IP in the VPC) and the ingress rules of each of its groups. Reads only.

    Args:
        ecs: an ECS 2014-05-26 client.
        spec: the pipeline spec (gitlab.private_ip, gitlab.security_group_id, network.vpc_id).

    Returns:
        ``{"instance": DescribeInstances item dict | None, "groups": {sg id: [ingress Permission dicts,
        each with its SecurityGroupId]}}``; when no instance has the IP but the spec names
        ``gitlab.security_group_id``, that group alone.

    Raises:
        Exception: the SDK's error for a failed read (DescribeInstances only when the spec names no group).
    """
    req = ecs_models.DescribeInstancesRequest(
        region_id=spec.region, vpc_id=spec.network.vpc_id, private_ip_addresses=json.dumps([spec.gitlab.private_ip])
    )
    try:
        found = (ecs.describe_instances(req).body.to_map().get("Instances") or {}).get("Instance", [])
    except Exception:
        if not spec.gitlab.security_group_id:
            raise
        found = []  # the group named in the spec is still checked
    instance = found[0] if found else None
    group_ids = list((instance or {}).get("SecurityGroupIds", {}).get("SecurityGroupId", []))
    if instance is None and spec.gitlab.security_group_id:
        group_ids = [spec.gitlab.security_group_id]
    return {"instance": instance, "groups": {gid: _ingress_rules(ecs, spec, gid) for gid in group_ids}}


def _vbr(vpc: Any, spec: Spec) -> dict[str, Any]:
    flt = vpc_models.DescribeVirtualBorderRoutersRequestFilter(key="VbrId", value=[spec.network.vbr_id])
    body = vpc.describe_virtual_border_routers(
        vpc_models.DescribeVirtualBorderRoutersRequest(region_id=spec.region, filter=[flt])
    ).body.to_map()
    vbrs = (body.get("VirtualBorderRouterSet") or {}).get("VirtualBorderRouterType", [])
    if not vbrs:
        return {"vbr": None, "routes": []}

    def fetch(token: str | None) -> dict[str, Any]:
        req = vpc_models.DescribeRouteEntryListRequest(
            region_id=spec.region, route_table_id=vbrs[0]["RouteTableId"], max_result=100, next_token=token
        )
        return vpc.describe_route_entry_list(req).body.to_map()

    routes = list(
        paginate(
            fetch,
            lambda page: (page.get("RouteEntrys") or {}).get("RouteEntry"),
            what=f"DescribeRouteEntryList of {vbrs[0]['RouteTableId']}",
        )
    )
    return {"vbr": vbrs[0], "routes": routes}


def _repository(cr: Any, spec: Spec, namespace: str, name: str) -> dict[str, Any]:
    try:
        repo = check_cr(
            cr.get_repository(
                cr_models.GetRepositoryRequest(
                    instance_id=spec.instance_id, repo_namespace_name=namespace, repo_name=name
                )
            ),
            "GetRepository",
        ).to_map()
    except CrBusinessError as exc:
        if exc.code in _REPO_MISSING:
            return {"repository": None, "source": None}
        raise
    try:
        source = check_cr(
            cr.get_repo_source_code_repo(
                cr_models.GetRepoSourceCodeRepoRequest(instance_id=spec.instance_id, repo_id=repo["RepoId"])
            ),
            "GetRepoSourceCodeRepo",
        ).to_map()
    except CrBusinessError as exc:
        if exc.code in _NOT_BOUND:
            return {"repository": repo, "source": None}
        raise
    return {"repository": repo, "source": source if source.get("CodeRepoName") else None}


def observe(clients: CloudClients, spec: Spec, *, gitlab: Any = None) -> Observation:
    """Run every preflight read, concurrently where independent. Reads only.

    Args:
        clients: the CR, ECS and VPC clients from :func:`acrvpc.cloud.clients.cloud_clients`.
        spec: the pipeline spec.
        gitlab: a python-gitlab client, or a zero-argument callable building one (so that a
            missing token becomes a failed check), or ``None`` to skip the GitLab checks.

    Returns:
        The :class:`Observation`; failed reads carry their exception.
    """
    net, region = spec.network, spec.region
    with ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="preflight") as pool:
        instance = pool.submit(
            _read,
            lambda: check_cr(
                clients.cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)), "GetInstance"
            ).to_map(),
        )
        vpc = pool.submit(
            _read,
            lambda: clients.vpc.describe_vpc_attribute(
                vpc_models.DescribeVpcAttributeRequest(region_id=region, vpc_id=net.vpc_id)
            ).body.to_map(),
        )
        vswitch = pool.submit(
            _read,
            lambda: clients.vpc.describe_vswitch_attributes(
                vpc_models.DescribeVSwitchAttributesRequest(region_id=region, v_switch_id=net.vswitch_id)
            ).body.to_map(),
        )
        host = (
            pool.submit(_read, read_gitlab_host, clients.ecs, spec) if spec.gitlab.access == GitLabAccess.ECS else None
        )
        vbr = pool.submit(_read, _vbr, clients.vpc, spec) if net.vbr_id else None
        repos = {
            r.full_name: pool.submit(_read, _repository, clients.cr, spec, r.namespace, r.name)
            for r in spec.repositories
        }
        token = None
        if gitlab is not None:
            make = gitlab if callable(gitlab) and not hasattr(gitlab, "auth") else (lambda: gitlab)
            token = pool.submit(_read, lambda: validate_token(make(), spec))
        return Observation(
            instance.result(),
            vpc.result(),
            vswitch.result(),
            host.result() if host else None,
            vbr.result() if vbr else None,
            {k: f.result() for k, f in repos.items()},
            token.result() if token else None,
        )


def run_preflight(clients: CloudClients, spec: Spec, *, gitlab: Any = None) -> PreflightOutcome:
    """Check every prerequisite of the procedure. Makes no write, ever.

    Args:
        clients: the CR, ECS and VPC clients from :func:`acrvpc.cloud.clients.cloud_clients`.
        spec: the pipeline spec.
        gitlab: a python-gitlab client (or a callable building one) to validate the token and
            projects; ``None`` skips those checks.

    Returns:
        The checks; ``outcome.passed`` is false when any check failed.
    """
    return evaluate(spec, observe(clients, spec, gitlab=gitlab))


def preflight_error(spec: Spec, outcome: PreflightOutcome, *, retryable: bool = False) -> PipelineError:
    """The ``PREFLIGHT_FAILED`` error naming each failing check and its fix."""
    failures = outcome.failures
    lines = "; ".join(f"{c.id}: {c.detail} (fix: {c.fix})" for c in failures)
    return PipelineError(
        f"preflight of {spec.name}: {len(failures)} check(s) failed, nothing was created: {lines}",
        code="PREFLIGHT_FAILED",
        fix="apply the fix of each failing check, then rerun",
        retryable=retryable,
    )


def artifact_rows(outcome: PreflightOutcome) -> list[dict[str, str]]:
    """The table artifact's rows: check, result, detail, fix."""
    return [{"check": c.id, "result": c.result, "detail": c.detail, "fix": c.fix} for c in outcome.checks]


@task(name="preflight", task_run_name="preflight {spec.name}", **RETRY)
def preflight(spec: Spec) -> PreflightOutcome:
    """Prefect task: run every preflight check, publish them as a table artifact, stop the flow on failure.

    Args:
        spec: the pipeline spec.

    Returns:
        The :class:`~acrvpc.domain.outcomes.PreflightOutcome` (every check passed, warned or was skipped).

    Raises:
        PipelineError: ``PREFLIGHT_FAILED`` naming each failing check id and its fix (retryable only
            when every failure came from a transient API error).
    """
    logger = get_run_logger()
    obs = observe(cloud.cloud_clients(spec), spec, gitlab=functools.partial(cloud.gitlab_for, spec))
    outcome = evaluate(spec, obs)
    create_table_artifact(
        table=artifact_rows(outcome),
        key=f"preflight-{spec.name}",
        description=f"Preflight checks of {spec.name}: {len(outcome.failures)} failing",
    )
    for check in outcome.checks:
        if check.result in ("fail", "warn"):
            logger.warning("%s %s: %s (fix: %s)", check.result.upper(), check.id, check.detail, check.fix)
    if not outcome.passed:
        transient = obs.transient_check_ids()
        raise preflight_error(spec, outcome, retryable=all(c.id in transient for c in outcome.failures))
    return outcome
