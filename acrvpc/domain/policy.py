"""The least-privilege RAM policy for a spec, generated from :mod:`acrvpc.domain.actions`.

``policy_for(spec)`` returns a RAM policy document (``{"Version": "1", "Statement": [...]}``, the
Alibaba Cloud policy grammar) that allows exactly the RAM actions the declared stages of the spec's
link mode call, each on the narrowest resource the service authorizes it on, grouped into one
``Allow`` statement per resource set. ``acrvpc policy SPEC`` prints it.

* ``link.mode: api`` includes link, ENI and the link transaction's rollback (a failed run deletes
  the group and ENI it created: without those deletes a failed run would leave them behind).
* ``link.mode: console`` has no link or ENI writes: only the console verification's reads (and
  the first repository/source binding the account check makes, as the binding stage would).
* ``with_fix`` adds ``preflight --fix`` (``ecs:AuthorizeSecurityGroup`` on GitLab's group);
  ``with_teardown`` adds ``acrvpc teardown`` (ENI and security group deletes). A scheduled or
  on-push AccessKey needs neither; give the person who runs them a key with the extra option.

Resources (``{region}`` is the spec's, the account is ``*``: the spec names no account id):

==========================  =================================================================
kind                        ARN
==========================  =================================================================
CR instance                 ``acs:cr:{region}:*:instance/{instance_id}``
CR namespace                ``acs:cr:{region}:*:repository/{instance_id}/{namespace}`` (each of the spec's)
CR repository               ``acs:cr:{region}:*:repository/{instance_id}/{namespace}/{name}`` (each of the spec's)
CR instance repositories    ``acs:cr:{region}:*:repository/{instance_id}`` (``GetRepoBuildRecord``, ``GetRepoTag``)
ECS security group / ENI    ``acs:ecs:{region}:*:securitygroup/*``, ``acs:ecs:{region}:*:networkinterface/*``
VPC / vSwitch               ``acs:vpc:{region}:*:vpc/{vpc_id}``, ``acs:vpc:{region}:*:vswitch/{vswitch_id}``
region-wide                 ``acs:{product}:{region}:*:*`` (list actions without resource-level authorization)
==========================  =================================================================

Assumptions (from the CR "RAM authorization information" page and the per-API "Authorization
information" tables; where a table was not found, the plausible reading is taken):

* CR authorizes under its own RAM action names (``CreateBuildRecordByRule`` is
  ``cr:BuildRepositoryByRule``, ``GetRepoSourceCodeRepo`` is ``cr:GetSourceRepository``...) on the
  repository resource ``repository/{instance}/{namespace}/{name}``, resolving the request's RepoId;
  namespace operations and ``CreateRepository`` on ``repository/{instance}/{namespace}``;
  ``GetRepoBuildRecord`` and ``GetRepoTag`` on ``repository/{instance}`` (as their API pages say).
* ECS authorizes security-group and ENI writes and ``DescribeSecurityGroupAttribute`` on the group /
  ENI named in the request (``*`` for one being created), so the group and ENI the pipeline creates
  need ``securitygroup/*`` and ``networkinterface/*`` in the region: their ids are not known before
  the run. ``Describe*`` list actions (``DescribeSecurityGroups``, ``DescribeNetworkInterfaces``,
  ``DescribeNetworkInterfacePermissions``, ``DescribeInstances``) are authorized region-wide.
* VPC authorizes ``DescribeVpcAttribute`` / ``DescribeVSwitchAttributes`` on the VPC / vSwitch, and
  the VBR reads (``DescribeVirtualBorderRouters``, ``DescribeRouteEntryList``) region-wide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from acrvpc.domain import actions
from acrvpc.domain.actions import Api
from acrvpc.domain.spec import Spec

VERSION = "1"
ACCOUNT = "*"


def resources_of(api: Api, spec: Spec, *, any_ids: bool = False) -> list[str]:
    """The ARNs an API action is granted on, for a spec.

    Args:
        api: a declared API action.
        spec: the pipeline spec (region, instance, repositories, network).
        any_ids: ``*`` instead of the spec's instance, namespaces, repositories, VPC and vSwitch
            (one policy for every spec in the region; same actions and resource types).

    Returns:
        One or more ARN strings (sorted, without duplicates).
    """
    region = spec.region
    instance = "*" if any_ids else spec.instance_id
    repos = [("*", "*")] if any_ids else [(r.namespace, r.name) for r in spec.repositories]
    cr = f"acs:cr:{region}:{ACCOUNT}"
    kind = api.resource
    if kind == actions.INSTANCE:
        arns = [f"{cr}:instance/{instance}"]
    elif kind == actions.NAMESPACE:
        arns = [f"{cr}:repository/{instance}/{namespace}" for namespace, _ in repos]
    elif kind == actions.REPOSITORY:
        arns = [f"{cr}:repository/{instance}/{namespace}/{name}" for namespace, name in repos]
    elif kind == actions.REPOSITORIES:
        arns = [f"{cr}:repository/{instance}"]
    elif kind in (actions.SECURITY_GROUP, actions.NETWORK_INTERFACE):
        arns = [f"acs:ecs:{region}:{ACCOUNT}:{kind}/*"]
    elif kind == actions.VPC:
        arns = [f"acs:vpc:{region}:{ACCOUNT}:vpc/{'*' if any_ids else spec.network.vpc_id}"]
    elif kind == actions.VSWITCH:
        arns = [f"acs:vpc:{region}:{ACCOUNT}:vswitch/{'*' if any_ids else spec.network.vswitch_id}"]
    else:  # region-wide
        arns = [f"acs:{api.product}:{region}:{ACCOUNT}:*"]
    return sorted(set(arns))


def options_of(*, with_fix: bool = False, with_teardown: bool = False) -> list[str]:
    """The :data:`acrvpc.domain.actions.OPTIONS` the flags ask for."""
    return [opt for opt, on in ((actions.OPTION_FIX, with_fix), (actions.OPTION_TEARDOWN, with_teardown)) if on]


def policy_for(
    spec: Spec, *, with_fix: bool = False, with_teardown: bool = False, any_ids: bool = False
) -> dict[str, Any]:
    """The least-privilege RAM policy for running ``spec``.

    Args:
        spec: the pipeline spec (its link mode, access and ids scope the policy).
        with_fix: include ``acrvpc preflight --fix``'s write.
        with_teardown: include ``acrvpc teardown``'s deletes.
        any_ids: grant on any instance, repository, VPC and vSwitch of the region (see :func:`resources_of`).

    Returns:
        ``{"Version": "1", "Statement": [{"Effect": "Allow", "Action": [...], "Resource": [...]}, ...]}``:
        one statement per resource set, actions and resources sorted, statements in a stable order.
    """
    grouped: dict[tuple[str, ...], set[str]] = {}
    for _stage, api in actions.calls_for(spec, options_of(with_fix=with_fix, with_teardown=with_teardown)):
        grouped.setdefault(tuple(resources_of(api, spec, any_ids=any_ids)), set()).add(api.ram_action)
    statements = [
        {"Effect": "Allow", "Action": sorted(acts), "Resource": list(arns)} for arns, acts in sorted(grouped.items())
    ]
    return {"Version": VERSION, "Statement": statements}


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action an ``Allow`` statement of ``policy`` names (strings or lists)."""
    found: set[str] = set()
    for statement in policy.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        acts = statement.get("Action", [])
        found.update([acts] if isinstance(acts, str) else acts)
    return found


def without_action(policy: dict[str, Any], action: str) -> dict[str, Any]:
    """A copy of ``policy`` with one action removed from every statement (empty statements dropped).

    Args:
        policy: a RAM policy document.
        action: the RAM action to remove, e.g. ``ecs:CreateNetworkInterface``.

    Returns:
        The new policy document.
    """
    statements = []
    for statement in policy.get("Statement", []):
        acts = statement.get("Action", [])
        acts = [acts] if isinstance(acts, str) else list(acts)
        kept = [a for a in acts if a != action]
        if kept:
            statements.append({**statement, "Action": kept})
    return {**policy, "Statement": statements}


def merge(policies: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One policy allowing what any of ``policies`` allows (their statements, duplicates dropped)."""
    statements: list[dict[str, Any]] = []
    for policy in policies:
        for statement in policy.get("Statement", []):
            if statement not in statements:
                statements.append(statement)
    return {"Version": VERSION, "Statement": statements}


def to_json(policy: dict[str, Any]) -> str:
    """The policy as the indented JSON the RAM console accepts."""
    return json.dumps(policy, indent=2) + "\n"


def stages_markdown() -> str:
    """The declared stages as a markdown table (docs/policy.md embeds it; a test keeps it current)."""
    lines = ["| stage | link modes | in the policy | RAM actions (condition) |", "|---|---|---|---|"]
    for stage in actions.STAGES:
        when = f"`--with-{stage.option}`" if stage.option else "always"
        calls = ", ".join(f"`{a.ram_action}`" + (f" ({a.when})" if a.when else "") for a in stage.calls)
        lines.append(f"| {stage.name} | {', '.join(sorted(stage.modes))} | {when} | {calls} |")
    return "\n".join(lines)
