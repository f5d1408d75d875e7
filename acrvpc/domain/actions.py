"""Every Alibaba Cloud API action the pipeline calls, declared once: per stage, per link mode.

This list is the single source of truth for what an AccessKey handed to the pipeline must allow:

* :func:`acrvpc.domain.policy.policy_for` builds the least-privilege RAM policy (``acrvpc policy SPEC``)
  from it, and nothing else;
* :func:`guard` (applied by :func:`acrvpc.cloud.clients.cloud_clients`, the one factory every stage uses)
  refuses, before sending, any action not declared here for its product
  (``PipelineError`` code ``ACTION_NOT_DECLARED``), so the pipeline cannot call outside the policy;
* the same guard turns a RAM refusal (``Forbidden.RAM``, CR's ``NoPrivilege``) into a message that
  names the RAM action and the resource to grant, whatever stage made the call.

Declaring a new call (e.g. ``ListRepoBuildRecord`` in the build stage)::

    Api("cr", "ListRepoBuildRecord", "cr:ListRepositoryBuild", REPOSITORY),

in the stage that makes it. The RAM action (which for Container Registry differs from the API
name) and the resource kind come from the API's "Authorization information" table in the
Alibaba Cloud API reference; ECS and VPC RAM actions are ``<product>:<Action>``.

Resource kinds (expanded to ARNs by :mod:`acrvpc.domain.policy`): ``instance`` (the CR instance),
``namespace`` / ``repository`` (the spec's namespaces / repositories in it), ``repositories``
(the instance's repository scope), ``securitygroup`` / ``networkinterface`` (any in the region),
``vpc`` / ``vswitch`` (the spec's), ``region`` (the product's resources in the spec's region, for
actions without resource-level authorization, e.g. most ``Describe*`` lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from acrvpc.domain.spec import Spec

INSTANCE, NAMESPACE, REPOSITORY, REPOSITORIES = "instance", "namespace", "repository", "repositories"
SECURITY_GROUP, NETWORK_INTERFACE, VPC, VSWITCH, REGION = (
    "securitygroup",
    "networkinterface",
    "vpc",
    "vswitch",
    "region",
)
RESOURCE_KINDS = (
    INSTANCE,
    NAMESPACE,
    REPOSITORY,
    REPOSITORIES,
    SECURITY_GROUP,
    NETWORK_INTERFACE,
    VPC,
    VSWITCH,
    REGION,
)
PRODUCTS = ("cr", "ecs", "vpc")
# Options of `acrvpc policy`: stages a plain run never reaches.
OPTION_FIX, OPTION_TEARDOWN = "fix", "teardown"
OPTIONS = (OPTION_FIX, OPTION_TEARDOWN)
THIS_FILE = "acrvpc/domain/actions.py"


# RAM refusal codes: ECS/VPC answer Forbidden.RAM (or Forbidden.RAMSTS for STS tokens), CR NoPrivilege.
@dataclass(frozen=True)
class Api:
    """One API action a stage calls.

    Attributes:
        product: ``cr``, ``ecs`` or ``vpc``.
        action: the API action (the ``Action`` / ``x-acs-action`` the SDK sends).
        ram_action: the RAM action the service authorizes it as, e.g. ``cr:BuildRepositoryByRule``.
        resource: the resource kind the service authorizes it on (see the module docstring).
        when: a condition on the spec (a key of :data:`CONDITIONS`), or ``None`` for always.
    """

    product: str
    action: str
    ram_action: str
    resource: str
    when: str | None = None

    def __post_init__(self) -> None:
        if self.product not in PRODUCTS:
            raise ValueError(f"{self.action}: product {self.product!r} is not one of {PRODUCTS}")
        if self.resource not in RESOURCE_KINDS:
            raise ValueError(f"{self.action}: resource kind {self.resource!r} is not one of {RESOURCE_KINDS}")
        if self.when is not None and self.when not in CONDITIONS:
            raise ValueError(f"{self.action}: condition {self.when!r} is not one of {sorted(CONDITIONS)}")


@dataclass(frozen=True)
class Stage:
    """A stage (or pipeline path) and the API actions it calls.

    Attributes:
        name: the stage, as in the run report.
        modes: the link modes whose runs reach it (``api``, ``console``).
        option: ``None`` when every run of those modes may reach it, else the ``acrvpc policy``
            option that includes it (``fix``: ``preflight --fix``; ``teardown``: ``acrvpc teardown``).
        calls: the API actions.
        why: one line for the policy's documentation.
    """

    name: str
    modes: frozenset[str]
    calls: tuple[Api, ...]
    why: str
    option: str | None = None


def _gitlab_on_ecs(spec: Spec) -> bool:
    return spec.gitlab.access.value == "ecs"


def _has_vbr(spec: Spec) -> bool:
    return bool(spec.network.vbr_id)


CONDITIONS: dict[str, Callable[[Spec], bool]] = {
    "gitlab_on_ecs": _gitlab_on_ecs,  # preflight reads GitLab's ECS instance and its security groups
    "vbr": _has_vbr,  # preflight reads the VBR and its route table
}

BOTH = frozenset({"api", "console"})
API = frozenset({"api"})
CONSOLE = frozenset({"console"})

# Reads and writes shared by several stages.
_GET_REPOSITORY = Api("cr", "GetRepository", "cr:GetRepository", REPOSITORY)
_GET_SOURCE = Api("cr", "GetRepoSourceCodeRepo", "cr:GetSourceRepository", REPOSITORY)
_GET_NAMESPACE = Api("cr", "GetNamespace", "cr:GetNamespace", NAMESPACE)
_CREATE_NAMESPACE = Api("cr", "CreateNamespace", "cr:CreateNamespace", NAMESPACE)
_CREATE_REPOSITORY = Api("cr", "CreateRepository", "cr:CreateRepository", NAMESPACE)
_CREATE_SOURCE = Api("cr", "CreateRepoSourceCodeRepo", "cr:CreateSourceRepository", REPOSITORY)
_LIST_RULES = Api("cr", "ListRepoBuildRule", "cr:ListRepositoryBuildRule", REPOSITORY)
_DESCRIBE_GROUPS = Api("ecs", "DescribeSecurityGroups", "ecs:DescribeSecurityGroups", REGION)
_DESCRIBE_GROUP = Api("ecs", "DescribeSecurityGroupAttribute", "ecs:DescribeSecurityGroupAttribute", SECURITY_GROUP)
_DESCRIBE_ENIS = Api("ecs", "DescribeNetworkInterfaces", "ecs:DescribeNetworkInterfaces", REGION)
_DESCRIBE_ENI_PERMS = Api(
    "ecs", "DescribeNetworkInterfacePermissions", "ecs:DescribeNetworkInterfacePermissions", REGION
)
_DELETE_ENI_PERM = Api(
    "ecs", "DeleteNetworkInterfacePermission", "ecs:DeleteNetworkInterfacePermission", NETWORK_INTERFACE
)
_DELETE_ENI = Api("ecs", "DeleteNetworkInterface", "ecs:DeleteNetworkInterface", NETWORK_INTERFACE)
_DELETE_GROUP = Api("ecs", "DeleteSecurityGroup", "ecs:DeleteSecurityGroup", SECURITY_GROUP)

STAGES: tuple[Stage, ...] = (
    Stage(
        "preflight",
        BOTH,
        why="checks every prerequisite (tasks/preflight.py; also `acrvpc plan`)",
        calls=(
            Api("cr", "GetInstance", "cr:GetInstance", INSTANCE),
            _GET_REPOSITORY,
            _GET_SOURCE,
            Api("vpc", "DescribeVpcAttribute", "vpc:DescribeVpcAttribute", VPC),
            Api("vpc", "DescribeVSwitchAttributes", "vpc:DescribeVSwitchAttributes", VSWITCH),
            Api("ecs", "DescribeInstances", "ecs:DescribeInstances", REGION, when="gitlab_on_ecs"),
            Api(
                "ecs",
                "DescribeSecurityGroupAttribute",
                "ecs:DescribeSecurityGroupAttribute",
                SECURITY_GROUP,
                when="gitlab_on_ecs",
            ),
            Api("vpc", "DescribeVirtualBorderRouters", "vpc:DescribeVirtualBorderRouters", REGION, when="vbr"),
            Api("vpc", "DescribeRouteEntryList", "vpc:DescribeRouteEntryList", REGION, when="vbr"),
        ),
    ),
    Stage(
        "preflight-fix",
        BOTH,
        option=OPTION_FIX,
        why="`acrvpc preflight --fix` adds the 100.104.0.0/16 ingress rule to GitLab's group (tasks/preflight_fix.py)",
        calls=(
            Api("ecs", "AuthorizeSecurityGroup", "ecs:AuthorizeSecurityGroup", SECURITY_GROUP, when="gitlab_on_ecs"),
        ),
    ),
    Stage(
        "link",
        API,
        why="creates and converges the build security group (tasks/link.py)",
        calls=(
            _DESCRIBE_GROUPS,
            _DESCRIBE_GROUP,
            Api("ecs", "CreateSecurityGroup", "ecs:CreateSecurityGroup", SECURITY_GROUP),
            Api("ecs", "ModifySecurityGroupPolicy", "ecs:ModifySecurityGroupPolicy", SECURITY_GROUP),
            Api("ecs", "AuthorizeSecurityGroupEgress", "ecs:AuthorizeSecurityGroupEgress", SECURITY_GROUP),
            Api("ecs", "RevokeSecurityGroupEgress", "ecs:RevokeSecurityGroupEgress", SECURITY_GROUP),
            Api("ecs", "RevokeSecurityGroup", "ecs:RevokeSecurityGroup", SECURITY_GROUP),
        ),
    ),
    Stage(
        "eni",
        API,
        why="creates the build ENI and lets the registry attach it (tasks/eni.py)",
        calls=(
            _DESCRIBE_ENIS,
            _DESCRIBE_ENI_PERMS,
            Api("ecs", "CreateNetworkInterface", "ecs:CreateNetworkInterface", NETWORK_INTERFACE),
            Api("ecs", "CreateNetworkInterfacePermission", "ecs:CreateNetworkInterfacePermission", NETWORK_INTERFACE),
            Api("ecs", "ModifyNetworkInterfaceAttribute", "ecs:ModifyNetworkInterfaceAttribute", NETWORK_INTERFACE),
        ),
    ),
    Stage(
        "rollback",
        API,
        why="a failed link/ENI transaction deletes what that run created (tasks/teardown.py rollback_link)",
        calls=(_DESCRIBE_GROUPS, _DESCRIBE_ENIS, _DESCRIBE_ENI_PERMS, _DELETE_ENI_PERM, _DELETE_ENI, _DELETE_GROUP),
    ),
    Stage(
        "console-verify",
        CONSOLE,
        why="verifies the console-made link and account binding (tasks/console.py)",
        calls=(
            _DESCRIBE_GROUPS,
            _DESCRIBE_GROUP,
            _DESCRIBE_ENIS,
            _GET_REPOSITORY,
            _GET_SOURCE,
            _GET_NAMESPACE,
            _CREATE_NAMESPACE,
            _CREATE_REPOSITORY,
            _CREATE_SOURCE,
        ),
    ),
    Stage(
        "binding",
        BOTH,
        why="namespaces, repositories, source bindings and build rules (tasks/binding.py)",
        calls=(
            _GET_NAMESPACE,
            _CREATE_NAMESPACE,
            _GET_REPOSITORY,
            _CREATE_REPOSITORY,
            _GET_SOURCE,
            _CREATE_SOURCE,
            Api("cr", "UpdateRepoSourceCodeRepo", "cr:UpdateSourceRepository", REPOSITORY),
            _LIST_RULES,
            Api("cr", "CreateRepoBuildRule", "cr:CreateRepositoryBuildRule", REPOSITORY),
        ),
    ),
    Stage(
        "on-push",
        BOTH,
        why="checks the pushed repository's binding read-only (tasks/on_push.py)",
        calls=(
            _GET_REPOSITORY,
            _GET_SOURCE,
            _LIST_RULES,
        ),
    ),
    Stage(
        "build",
        BOTH,
        why="starts, follows and cancels builds, reads the built tag (tasks/build.py)",
        calls=(
            Api("cr", "CreateBuildRecordByRule", "cr:BuildRepositoryByRule", REPOSITORY),
            Api("cr", "GetRepoBuildRecordStatus", "cr:GetBuildRepositoryStatus", REPOSITORY),
            Api("cr", "ListRepoBuildRecordLog", "cr:GetRepositoryBuildLog", REPOSITORY),
            Api("cr", "GetRepoBuildRecord", "cr:GetRepositoryBuildRecord", REPOSITORIES),
            Api("cr", "CancelRepoBuildRecord", "cr:CancelBuildRepository", REPOSITORY),
            Api("cr", "GetRepoTag", "cr:ListRepositoryTag", REPOSITORIES),  # the built image's digest
        ),
    ),
    Stage(
        "teardown",
        BOTH,
        option=OPTION_TEARDOWN,
        why="`acrvpc teardown` deletes the link's ENIs and security groups (tasks/teardown.py)",
        calls=(
            _DESCRIBE_GROUPS,
            _DESCRIBE_ENIS,
            _DESCRIBE_ENI_PERMS,
            _DELETE_ENI_PERM,
            _DELETE_ENI,
            _DELETE_GROUP,
        ),
    ),
)


def _check_declarations(stages: Iterable[Stage]) -> dict[tuple[str, str], Api]:
    """Every (product, action) once, with one RAM action and resource kind wherever it is declared."""
    seen: dict[tuple[str, str], Api] = {}
    for stage in stages:
        for api in stage.calls:
            first = seen.setdefault((api.product, api.action), api)
            if (first.ram_action, first.resource) != (api.ram_action, api.resource):
                raise ValueError(
                    f"{api.product} {api.action} is declared twice with different RAM action or "
                    f"resource ({first} vs {api}) in {THIS_FILE}"
                )
    return seen


DECLARED: dict[tuple[str, str], Api] = _check_declarations(STAGES)


def stages_for(spec: Spec, options: Iterable[str] = ()) -> list[Stage]:
    """The stages a run of ``spec`` may reach, plus the optional ones asked for.

    Args:
        spec: the pipeline spec (its ``link.mode`` picks the stages).
        options: any of :data:`OPTIONS` (``fix``, ``teardown``).

    Returns:
        The stages, in pipeline order.

    Raises:
        ValueError: an unknown option.
    """
    chosen = set(options)
    unknown = chosen - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown policy option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}")
    mode = spec.link.mode.value
    return [s for s in STAGES if mode in s.modes and (s.option is None or s.option in chosen)]


def calls_for(spec: Spec, options: Iterable[str] = ()) -> list[tuple[Stage, Api]]:
    """Every (stage, API action) a run of ``spec`` may make, conditions applied.

    Args:
        spec: the pipeline spec.
        options: any of :data:`OPTIONS`.

    Returns:
        ``(stage, api)`` pairs in declaration order (an action shared by stages appears once per stage).
    """
    return [
        (stage, api)
        for stage in stages_for(spec, options)
        for api in stage.calls
        if api.when is None or CONDITIONS[api.when](spec)
    ]


def declared(product: str) -> set[str]:
    """The API actions declared for a product, in any stage or mode."""
    return {action for (prod, action) in DECLARED if prod == product}


def ram_action(product: str, action: str) -> str:
    """The RAM action an API action is authorized as (``<product>:<Action>`` when not declared)."""
    api = DECLARED.get((product, action))
    return api.ram_action if api else f"{product}:{action}"
