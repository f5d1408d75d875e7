"""RAM policy enforcement: the sandbox answers like a RAM user's AccessKey limited by a policy.

With no policy loaded (the default) every signed call is allowed, as for an account's own key.
With one (``SandboxServer(ram_policy=...)``, ``POST /_sandbox/ram {"policy": {...}}``,
``acrvpc sandbox --ram-policy FILE``) each RPC call is authorized before it runs:

1. the call's RAM action and resource ARN are derived from the request (:func:`request_target`),
   e.g. ``ecs:AuthorizeSecurityGroupEgress`` on ``acs:ecs:cn-hangzhou:<account>:securitygroup/sg-...``,
   ``cr:BuildRepositoryByRule`` on ``acs:cr:cn-hangzhou:<account>:repository/<instance>/<ns>/<repo>``;
2. the policy is evaluated (:meth:`RamPolicy.decide`): a matching ``Deny`` wins, else a matching
   ``Allow`` allows, else the call is implicitly denied. ``Action``/``NotAction`` and
   ``Resource``/``NotResource`` take ``*`` and ``?`` wildcards; actions match case-insensitively.
3. a refused call answers the real error: ECS and VPC HTTP 403 ``Forbidden.RAM``, Container
   Registry HTTP 403 ``NoPrivilege``, both with an ``AccessDeniedDetail`` object naming the
   ``AuthAction`` (the SDK keeps it as ``access_denied_detail``).

The policy is a server setting: ``POST /_sandbox/reset`` keeps it. GitLab calls are not subject to it.

Assumptions:
- Container Registry authorizes under its own action names (``CreateBuildRecordByRule`` is
  ``cr:BuildRepositoryByRule``...; :data:`CR_ACTIONS`) on the repository the request's ``RepoId``
  (or namespace and name) designates; namespace calls and ``CreateRepository`` on
  ``repository/<instance>/<namespace>``; ``GetRepoBuildRecord`` and ``GetRepoTag`` on
  ``repository/<instance>`` (as their API pages say);
  other CR calls on ``instance/<instance>`` when they carry an InstanceId, else region-wide. A RepoId the
  instance does not have cannot be resolved to a repository: then the action alone is authorized (any
  statement allowing it), and the service answers its own not-found error. Its refusal
  is HTTP 403 ``NoPrivilege`` "Access denied for this user." (the code every CR API page lists for 403).
- ECS authorizes a security-group call on ``securitygroup/<SecurityGroupId>``, an ENI call on
  ``networkinterface/<NetworkInterfaceId>`` (a permission's ENI for ``DeleteNetworkInterfacePermission``),
  and a create on ``securitygroup/*`` / ``networkinterface/*`` (the id does not exist yet). Every other
  ECS call (``Describe*`` lists, tags) is authorized region-wide (``acs:ecs:<region>:<account>:*``).
- VPC authorizes ``DescribeVpcAttribute`` on ``vpc/<VpcId>``, ``DescribeVSwitchAttributes`` on
  ``vswitch/<VSwitchId>``, and every other call region-wide.
- ``Condition`` blocks are not evaluated: a policy that has one is refused when loaded (400), rather
  than silently widened or narrowed.
- The ``AccessDeniedDetail`` fields follow the shape RAM documents (``AuthAction``, ``AuthPrincipalType``,
  ``AuthPrincipalOwnerId``, ``AuthPrincipalDisplayName``, ``NoPermissionType``, ``PolicyType``,
  ``EncodedDiagnosticMessage``); the diagnostic message is a base64 JSON of action and resource.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RpcError

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World

# Container Registry's RAM action names (they differ from the API names).
CR_ACTIONS = {
    "GetInstance": "cr:GetInstance",
    "ListInstance": "cr:ListInstance",
    "GetNamespace": "cr:GetNamespace",
    "CreateNamespace": "cr:CreateNamespace",
    "ListNamespace": "cr:ListNamespace",
    "GetRepository": "cr:GetRepository",
    "CreateRepository": "cr:CreateRepository",
    "ListRepository": "cr:ListRepository",
    "GetRepoSourceCodeRepo": "cr:GetSourceRepository",
    "CreateRepoSourceCodeRepo": "cr:CreateSourceRepository",
    "UpdateRepoSourceCodeRepo": "cr:UpdateSourceRepository",
    "ListRepoBuildRule": "cr:ListRepositoryBuildRule",
    "CreateRepoBuildRule": "cr:CreateRepositoryBuildRule",
    "CreateBuildRecordByRule": "cr:BuildRepositoryByRule",
    "GetRepoBuildRecordStatus": "cr:GetBuildRepositoryStatus",
    "GetRepoBuildRecord": "cr:GetRepositoryBuildRecord",
    "ListRepoBuildRecord": "cr:ListRepositoryBuild",
    "ListRepoBuildRecordLog": "cr:GetRepositoryBuildLog",
    "CancelRepoBuildRecord": "cr:CancelBuildRepository",
    "GetRepoTag": "cr:ListRepositoryTag",
    "ListRepoTag": "cr:ListRepositoryTag",
}
_CR_NAMESPACE_ACTIONS = {"GetNamespace", "CreateNamespace", "CreateRepository"}
_CR_INSTANCE_SCOPE = {"GetRepoBuildRecord", "GetRepoTag"}  # documented on repository/<instance>
_ECS_CREATES = {"CreateSecurityGroup": "securitygroup/*", "CreateNetworkInterface": "networkinterface/*"}
_ECS_GROUP_ACTIONS = {
    "DescribeSecurityGroupAttribute",
    "ModifySecurityGroupPolicy",
    "ModifySecurityGroupAttribute",
    "ModifySecurityGroupRule",
    "ModifySecurityGroupEgressRule",
    "AuthorizeSecurityGroup",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroup",
    "RevokeSecurityGroupEgress",
    "DeleteSecurityGroup",
}
_ECS_ENI_ACTIONS = {
    "CreateNetworkInterfacePermission",
    "ModifyNetworkInterfaceAttribute",
    "DeleteNetworkInterface",
    "AttachNetworkInterface",
    "DetachNetworkInterface",
}
_VPC_ATTRIBUTE_ACTIONS = {
    "DescribeVpcAttribute": ("vpc", "VpcId"),
    "DescribeVSwitchAttributes": ("vswitch", "VSwitchId"),
}
_EFFECTS = ("Allow", "Deny")
_KNOWN_KEYS = {"Effect", "Action", "NotAction", "Resource", "NotResource", "Condition", "Principal"}


class PolicyError(ValueError):
    """A policy document the sandbox cannot enforce (the message names the statement and field)."""


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise PolicyError(f"{where}: write a string or a non-empty list of strings")


def _pattern(glob: str, *, ignore_case: bool) -> re.Pattern[str]:
    """RAM's wildcards only: ``*`` any run, ``?`` one character; everything else literal (``[`` too)."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@dataclass(frozen=True)
class _Statement:
    effect: str
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool

    def matches(self, action: str, resource: str | None) -> bool:
        hit_action = any(p.fullmatch(action) for p in self.actions) != self.not_action
        if resource is None:  # the service could not resolve the resource: the action alone decides
            return hit_action
        hit_resource = any(p.fullmatch(resource) for p in self.resources) != self.not_resource
        return hit_action and hit_resource


class RamPolicy:
    """A parsed RAM policy document (``{"Version": "1", "Statement": [...]}``).

    Args:
        document: the policy as a mapping (or a JSON string).

    Raises:
        PolicyError: the document is not a policy the sandbox can enforce.
    """

    def __init__(self, document: dict[str, Any] | str) -> None:
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise PolicyError(f"the policy is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise PolicyError("the policy must be a JSON object with Version and Statement")
        if str(document.get("Version", "")) != "1":
            raise PolicyError('Version: RAM policies have "Version": "1"')
        raw = document.get("Statement")
        if not isinstance(raw, list):
            raise PolicyError("Statement: write a list of statements")
        self.document = document
        self.statements = [self._statement(s, i) for i, s in enumerate(raw)]

    @staticmethod
    def _statement(s: Any, i: int) -> _Statement:
        where = f"Statement[{i}]"
        if not isinstance(s, dict):
            raise PolicyError(f"{where}: must be an object")
        unknown = set(s) - _KNOWN_KEYS
        if unknown:
            raise PolicyError(f"{where}: unknown field(s) {sorted(unknown)}")
        if s.get("Effect") not in _EFFECTS:
            raise PolicyError(f"{where}.Effect: write Allow or Deny")
        if "Condition" in s:
            raise PolicyError(f"{where}.Condition: the sandbox does not evaluate conditions")
        if ("Action" in s) == ("NotAction" in s):
            raise PolicyError(f"{where}: give exactly one of Action and NotAction")
        if ("Resource" in s) == ("NotResource" in s):
            raise PolicyError(f"{where}: give exactly one of Resource and NotResource")
        action_key = "Action" if "Action" in s else "NotAction"
        resource_key = "Resource" if "Resource" in s else "NotResource"
        return _Statement(
            s["Effect"],
            tuple(_pattern(a, ignore_case=True) for a in _strings(s[action_key], f"{where}.{action_key}")),
            action_key == "NotAction",
            tuple(_pattern(r, ignore_case=False) for r in _strings(s[resource_key], f"{where}.{resource_key}")),
            resource_key == "NotResource",
        )

    def decide(self, action: str, resource: str | None) -> str:
        """``"Allow"``, ``"ExplicitDeny"`` or ``"ImplicitDeny"`` for a RAM action on a resource ARN.

        ``resource`` ``None`` (a resource the service cannot find) compares the actions only.
        """
        allowed = False
        for statement in self.statements:
            if statement.matches(action, resource):
                if statement.effect == "Deny":
                    return "ExplicitDeny"
                allowed = True
        return "Allow" if allowed else "ImplicitDeny"


def _cr_repository(world: World, instance_id: str, params: dict[str, str]) -> tuple[str, str] | None:
    namespace, name = params.get("RepoNamespaceName"), params.get("RepoName")
    if namespace and name:
        return namespace, name
    repo = world.cr.repos.get(params.get("RepoId", ""))
    if repo is not None and repo.instance_id == instance_id:
        return repo.namespace, repo.name
    return None


def _cr_target(world: World, action: str, params: dict[str, str], base: str) -> str | None:
    instance_id = params.get("InstanceId", "")
    if not instance_id:
        return f"{base}:*"
    if action in _CR_NAMESPACE_ACTIONS:
        namespace = params.get("NamespaceName") or params.get("RepoNamespaceName") or "*"
        return f"{base}:repository/{instance_id}/{namespace}"
    if action in _CR_INSTANCE_SCOPE:
        return f"{base}:repository/{instance_id}"
    if "RepoId" in params or "RepoName" in params:
        found = _cr_repository(world, instance_id, params)
        return f"{base}:repository/{instance_id}/{found[0]}/{found[1]}" if found else None
    return f"{base}:instance/{instance_id}"


def _ecs_target(world: World, action: str, params: dict[str, str], base: str) -> str:
    if action in _ECS_CREATES:
        return f"{base}:{_ECS_CREATES[action]}"
    if action in _ECS_GROUP_ACTIONS and params.get("SecurityGroupId"):
        return f"{base}:securitygroup/{params['SecurityGroupId']}"
    if action in _ECS_ENI_ACTIONS and params.get("NetworkInterfaceId"):
        return f"{base}:networkinterface/{params['NetworkInterfaceId']}"
    if action == "DeleteNetworkInterfacePermission":
        permission = world.ecs.permissions.get(params.get("NetworkInterfacePermissionId", ""))
        return f"{base}:networkinterface/{permission.eni_id if permission is not None else '*'}"
    return f"{base}:*"


def request_target(world: World, product: str, action: str, params: dict[str, str]) -> tuple[str, str | None]:
    """The RAM action and resource ARN a request is authorized as.

    Args:
        world: the sandbox world (CR repository ids and ENI permissions are resolved in it).
        product: ``cr``, ``ecs`` or ``vpc``.
        action: the API action.
        params: the request's parameters.

    Returns:
        ``(ram_action, arn)``, e.g. ``("ecs:DeleteSecurityGroup", "acs:ecs:cn-hangzhou:5123...:securitygroup/sg-1")``;
        the ARN is ``None`` for a CR repository id the instance does not have.
    """
    base = f"acs:{product}:{world.region}:{world.account_id}"
    if product == "cr":
        return CR_ACTIONS.get(action, f"cr:{action}"), _cr_target(world, action, params, base)
    if product == "ecs":
        return f"ecs:{action}", _ecs_target(world, action, params, base)
    if action in _VPC_ATTRIBUTE_ACTIONS and params.get(_VPC_ATTRIBUTE_ACTIONS[action][1]):
        kind, key = _VPC_ATTRIBUTE_ACTIONS[action]
        return f"{product}:{action}", f"{base}:{kind}/{params[key]}"
    return f"{product}:{action}", f"{base}:*"


class RamDenied(RpcError):
    """ECS / VPC: the RAM policy does not allow the call."""

    code = "Forbidden.RAM"
    status = 403
    message = "User not authorized to operate on the specified resource, or this API doesn't support RAM."


class CrNoPrivilege(RpcError):
    """Container Registry: the RAM policy does not allow the call."""

    code = "NoPrivilege"
    status = 403
    message = "Access denied for this user."


def _detail(world: World, ram_action: str, resource: str | None, decision: str, access_key_id: str) -> dict[str, Any]:
    diagnostic = base64.b64encode(
        json.dumps({"AuthAction": ram_action, "AuthResource": resource}, separators=(",", ":")).encode()
    ).decode()
    return {
        "AuthAction": ram_action,
        "AuthPrincipalType": "SubUser",
        "AuthPrincipalOwnerId": world.account_id,
        "AuthPrincipalDisplayName": access_key_id,
        "NoPermissionType": decision,
        "PolicyType": "AccountLevelIdentityBasedPolicy",
        "EncodedDiagnosticMessage": diagnostic,
    }


def authorize(world: World, product: str, action: str, params: dict[str, str], access_key_id: str) -> None:
    """Raise the product's RAM refusal when the world's policy does not allow the call (no policy: allow).

    Args:
        world: the sandbox world (``world.ram_policy`` is a :class:`RamPolicy` or ``None``).
        product: ``cr``, ``ecs`` or ``vpc``.
        action: the API action.
        params: the request's parameters.
        access_key_id: the caller's AccessKey id (shown as the principal, never its secret).

    Raises:
        RamDenied: ECS / VPC refusal (403 ``Forbidden.RAM``).
        CrNoPrivilege: Container Registry refusal (403 ``NoPrivilege``).
    """
    policy: RamPolicy | None = getattr(world, "ram_policy", None)
    if policy is None:
        return
    ram_action, resource = request_target(world, product, action, params)
    decision = policy.decide(ram_action, resource)
    if decision == "Allow":
        return
    error = CrNoPrivilege if product == "cr" else RamDenied
    raise error(extra={"AccessDeniedDetail": _detail(world, ram_action, resource, decision, access_key_id)})


def load_policy(document: dict[str, Any] | str | None) -> RamPolicy | None:
    """A :class:`RamPolicy` from a document, or ``None`` for none (every call allowed)."""
    return None if document is None else RamPolicy(document)
