"""The error cassettes of each action, and the scenarios: the calls of one stage function, in order.

Read by :func:`tests.contract.make_cassettes.cassettes`. Every answer is a documented example
(:func:`~tests.contract.make_cassettes.ok`), possibly with named fields changed for a state the
example does not show, or an error in the documented shape (:func:`~tests.contract.make_cassettes.fail`).
"""

from __future__ import annotations

from typing import Any

from tests.contract.make_cassettes import ALIBABA, fail, ok

# One error cassette (at least) per action and endpoint the pipeline uses.
ACTION_ERRORS: dict[str, list[str]] = {
    "cr/GetInstance": ["Forbidden.RAM", "INSTANCE_NOT_EXIST"],
    "cr/GetNamespace": ["INSTANCE_NOT_EXIST"],
    "cr/CreateNamespace": ["INSTANCE_STATUS_NOT_SUPPORT"],
    "cr/GetRepository": ["Throttling.User", "REPO_NOT_EXIST"],
    "cr/CreateRepository": ["InvalidParameter"],
    "cr/GetRepoSourceCodeRepo": ["Forbidden.RAM"],
    "cr/CreateRepoSourceCodeRepo": ["INSTANCE_STATUS_NOT_SUPPORT"],
    "cr/UpdateRepoSourceCodeRepo": ["Forbidden.RAM"],
    "cr/ListRepoBuildRule": ["REPO_NOT_EXIST"],
    "cr/CreateRepoBuildRule": ["InvalidParameter"],
    "cr/CreateBuildRecordByRule": ["REPO_NOT_EXIST"],
    "cr/GetRepoBuildRecordStatus": ["Forbidden.RAM", "Throttling.User"],
    "cr/ListRepoBuildRecordLog": ["InvalidParameter"],
    "cr/GetRepoBuildRecord": ["Throttling.User"],
    "cr/CancelRepoBuildRecord": ["INSTANCE_STATUS_NOT_SUPPORT"],
    "cr/GetRepoTag": ["TAG_NOT_EXIST"],
    "ecs/DescribeInstances": ["Forbidden.RAM"],
    "ecs/DescribeSecurityGroupAttribute": ["Throttling.User"],
    "ecs/AuthorizeSecurityGroup": ["InvalidParameter"],
    "ecs/DescribeSecurityGroups": ["Forbidden.RAM"],
    "ecs/CreateSecurityGroup": ["InvalidParameter"],
    "ecs/ModifySecurityGroupPolicy": ["Forbidden.RAM"],
    "ecs/AuthorizeSecurityGroupEgress": ["InvalidParameter"],
    "ecs/RevokeSecurityGroupEgress": ["Forbidden.RAM"],
    "ecs/RevokeSecurityGroup": ["Throttling.User"],
    "ecs/DescribeNetworkInterfaces": ["Forbidden.RAM"],
    "ecs/CreateNetworkInterface": ["InvalidParameter"],
    "ecs/ModifyNetworkInterfaceAttribute": ["InvalidParameter"],
    "ecs/DescribeNetworkInterfacePermissions": ["Throttling.User"],
    "ecs/CreateNetworkInterfacePermission": ["Forbidden.RAM"],
    "vpc/DescribeVpcAttribute": ["Throttling.User"],
    "vpc/DescribeVSwitchAttributes": ["InvalidParameter"],
    "vpc/DescribeRouteTableList": ["Forbidden.RAM"],
    "vpc/DescribeRouteEntryList": ["InvalidParameter"],
    "vpc/DescribeVirtualBorderRouters": ["Forbidden.RAM", "ServiceUnavailable"],
    "GET /user": ["401", "401-revoked"],
    "GET /personal_access_tokens/self": ["404-route"],
    "GET /projects/:id": ["403-insufficient_scope", "404-project"],
    # stage webhook (tasks/webhook_hook.py)
    "GET /projects/:id/hooks": ["403", "404-project"],
    "POST /projects/:id/hooks": ["422-url-blocked"],
    "PUT /projects/:id/hooks/:hook_id": ["403"],
    # teardown (tasks/teardown.py)
    "ecs/DeleteNetworkInterfacePermission": ["Forbidden.RAM"],
    "ecs/DeleteNetworkInterface": ["InvalidParameter"],
    "ecs/DeleteSecurityGroup": ["Forbidden.RAM", "DependencyViolation"],
}


GITLAB_SG_INGRESS = {  # the GitLab ECS's group: the documented shape, holding the reverse-access rule
    "SecurityGroupId": "sg-bp1gitlab000000****",
    "SecurityGroupName": "gitlab",
    "Description": "gitlab server",
    "Permissions.Permission": [
        {
            "SecurityGroupRuleId": "sgr-bp1gitlab0ingres****",
            "Direction": "ingress",
            "Policy": "Accept",
            "Priority": "1",
            "IpProtocol": "TCP",
            "PortRange": "80/80",
            "DestCidrIp": "",
            "SourceCidrIp": "100.104.0.0/16",
            "SourcePortRange": "",
            "NicType": "intranet",
            "Description": "ACR VPC build reverse access",
            "CreateTime": "2024-03-01T08:00:00Z",
        }
    ],
}
_SGA = ALIBABA["ecs/DescribeSecurityGroupAttribute"]["body"]["Permissions"]["Permission"]
MAVEN_RULE = {
    **_SGA[0],
    "SecurityGroupRuleId": "sgr-bp1maven0egress0****",
    "PortRange": "8081/8081",
    "DestCidrIp": "192.168.1.30/32",
    "Description": "Allowed 192.168.1.30:8081",
}
EXTRA_EGRESS = {
    **_SGA[0],
    "SecurityGroupRuleId": "sgr-bp1extra0egress0****",
    "PortRange": "443/443",
    "DestCidrIp": "0.0.0.0/0",
    "Description": "added by hand",
}
EXTRA_INGRESS = {
    **_SGA[0],
    "SecurityGroupRuleId": "sgr-bp1extra0ingress****",
    "Direction": "ingress",
    "PortRange": "22/22",
    "DestCidrIp": "",
    "SourceCidrIp": "0.0.0.0/0",
    "Description": "ssh",
}
CONVERGED_SG = {"InnerAccessPolicy": "Drop", "Permissions.Permission": [_SGA[0], _SGA[1], MAVEN_RULE]}
DRIFTED_SG = {
    "InnerAccessPolicy": "Drop",
    "Permissions.Permission": [_SGA[0], _SGA[1], MAVEN_RULE, EXTRA_EGRESS, EXTRA_INGRESS],
}
NO_GROUPS = {"SecurityGroups.SecurityGroup": [], "TotalCount": 0, "NextToken": ""}
NO_ENIS = {"NetworkInterfaceSets.NetworkInterfaceSet": [], "TotalCount": 0}
NO_PERMISSIONS = {"NetworkInterfacePermissions.NetworkInterfacePermission": [], "TotalCount": 0}
UNBOUND_SOURCE = {"CodeRepoType": "", "CodeRepoDomain": "", "CodeRepoNamespaceName": "", "CodeRepoName": ""}
NO_RULES = {"BuildRules": [], "TotalCount": "0"}

_PREFLIGHT_CR = [ok("cr/GetInstance"), ok("vpc/DescribeVpcAttribute"), ok("vpc/DescribeVSwitchAttributes")]
_PREFLIGHT_HOST = [ok("ecs/DescribeInstances"), ok("ecs/DescribeSecurityGroupAttribute", GITLAB_SG_INGRESS)]
_PREFLIGHT_REPO = [ok("cr/GetRepository"), ok("cr/GetRepoSourceCodeRepo")]
_GITLAB_OK = [ok("GET /user"), ok("GET /personal_access_tokens/self"), ok("GET /projects/:id")]
_PREFLIGHT_VBR = [ok("vpc/DescribeVirtualBorderRouters"), ok("vpc/DescribeRouteEntryList")]


def _swap(calls: list[dict[str, Any]], index: int, *replacement: dict[str, Any]) -> list[dict[str, Any]]:
    return calls[:index] + list(replacement) + calls[index + 1 :]


_PREFLIGHT = _PREFLIGHT_CR + _PREFLIGHT_HOST + _PREFLIGHT_REPO + _GITLAB_OK
_DATACENTER = _PREFLIGHT_CR + _PREFLIGHT_VBR + _PREFLIGHT_REPO
_BIND = [ok("cr/GetNamespace"), ok("cr/GetRepository"), ok("cr/GetRepoSourceCodeRepo"), ok("cr/ListRepoBuildRule")]
_BUILD_START = [ok("cr/CreateBuildRecordByRule"), ok("cr/GetRepoBuildRecordStatus"), ok("cr/ListRepoBuildRecordLog")]
_BUILD_DONE = {"BuildStatus": "success"}  # the documented lower-case value (Go SDK / GetRepoBuildRecordStatus doc)
# after a create with a ClientToken, the answered group / ENI is read back (it must exist, not be Deleting)
_CREATED_GROUP = {
    "SecurityGroups.SecurityGroup[0].SecurityGroupId": ALIBABA["ecs/CreateSecurityGroup"]["body"]["SecurityGroupId"]
}
_LINK_CREATE = [
    ok("ecs/DescribeSecurityGroups", NO_GROUPS),
    ok("ecs/CreateSecurityGroup"),
    ok("ecs/DescribeSecurityGroups", _CREATED_GROUP),
    ok("ecs/DescribeSecurityGroupAttribute"),
    ok("ecs/ModifySecurityGroupPolicy"),
    ok("ecs/AuthorizeSecurityGroupEgress"),
]
_LINK_DRIFT = [
    ok("ecs/DescribeSecurityGroups"),
    ok("ecs/DescribeSecurityGroupAttribute", DRIFTED_SG),
    ok("ecs/RevokeSecurityGroupEgress"),
    ok("ecs/RevokeSecurityGroup"),
]
_ENI_CREATE = [
    ok("ecs/DescribeNetworkInterfaces", NO_ENIS),
    ok("ecs/CreateNetworkInterface"),
    ok("ecs/DescribeNetworkInterfaces", {"NetworkInterfaceSets.NetworkInterfaceSet[0].Status": "Available"}),
    ok("ecs/DescribeNetworkInterfacePermissions", NO_PERMISSIONS),
    ok("ecs/CreateNetworkInterfacePermission"),
]
_ATTACHING = {"NetworkInterfaceSets.NetworkInterfaceSet[0].Status": "Attaching"}
_AVAILABLE = {"NetworkInterfaceSets.NetworkInterfaceSet[0].Status": "Available"}
# webhook: the routed project is addressed by its path
HOOKS = "/api/v4/projects/platform%2Fbilling-api/hooks"
_HOOKS_NONE = ok("GET /projects/:id/hooks", path=HOOKS, body=[])
_HOOKS_OK = ok("GET /projects/:id/hooks", path=HOOKS)
# teardown: the documented ENI and group carrying this link's tag (contract spec name contract-build)
_LINK_TAG = [{"TagKey": "acr-vpc-build:link", "TagValue": "contract-build"}]
TAGGED_ENI = {"NetworkInterfaceSets.NetworkInterfaceSet[0].Tags.Tag": _LINK_TAG}
TAGGED_GROUP = {"SecurityGroups.SecurityGroup[0].Tags.Tag": _LINK_TAG, "NextToken": ""}
_ENI_GONE = ok("ecs/DescribeNetworkInterfaces", NO_ENIS)
_TEARDOWN_FIND = [ok("ecs/DescribeNetworkInterfaces", TAGGED_ENI), ok("ecs/DescribeSecurityGroups", TAGGED_GROUP)]
_TEARDOWN_ENI = [
    ok("ecs/DescribeNetworkInterfaces", TAGGED_ENI),
    ok("ecs/DescribeNetworkInterfacePermissions"),
    ok("ecs/DeleteNetworkInterfacePermission"),
    ok("ecs/DescribeNetworkInterfaces", {**TAGGED_ENI, **_AVAILABLE}),
]


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    # preflight: observe() / run_preflight()
    "preflight/ecs.success": _PREFLIGHT,
    "preflight/datacenter.success": _DATACENTER,
    "preflight/GetInstance.Forbidden.RAM": _swap(_PREFLIGHT, 0, fail("cr/GetInstance", "Forbidden.RAM")),
    "preflight/GetInstance.INSTANCE_NOT_EXIST": _swap(_PREFLIGHT, 0, fail("cr/GetInstance", "INSTANCE_NOT_EXIST")),
    "preflight/DescribeVpcAttribute.Throttling.User": _swap(
        _PREFLIGHT, 1, fail("vpc/DescribeVpcAttribute", "Throttling.User")
    ),
    "preflight/DescribeVSwitchAttributes.InvalidParameter": _swap(
        _PREFLIGHT, 2, fail("vpc/DescribeVSwitchAttributes", "InvalidParameter")
    ),
    "preflight/DescribeInstances.Forbidden.RAM": _PREFLIGHT[:3]
    + [fail("ecs/DescribeInstances", "Forbidden.RAM")]
    + _PREFLIGHT_REPO
    + _GITLAB_OK,
    "preflight/DescribeSecurityGroupAttribute.Throttling.User": _swap(
        _PREFLIGHT, 4, fail("ecs/DescribeSecurityGroupAttribute", "Throttling.User")
    ),
    "preflight/GetRepository.REPO_NOT_EXIST": _PREFLIGHT[:5]
    + [fail("cr/GetRepository", "REPO_NOT_EXIST")]
    + _GITLAB_OK,
    "preflight/GetRepoSourceCodeRepo.Forbidden.RAM": _swap(
        _PREFLIGHT, 6, fail("cr/GetRepoSourceCodeRepo", "Forbidden.RAM")
    ),
    "preflight/DescribeVirtualBorderRouters.Forbidden.RAM": _PREFLIGHT_CR
    + [fail("vpc/DescribeVirtualBorderRouters", "Forbidden.RAM")]
    + _PREFLIGHT_REPO,
    "preflight/DescribeVirtualBorderRouters.ServiceUnavailable": _PREFLIGHT_CR
    + [fail("vpc/DescribeVirtualBorderRouters", "ServiceUnavailable")]
    + _PREFLIGHT_REPO,
    "preflight/DescribeRouteEntryList.InvalidParameter": _swap(
        _DATACENTER, 4, fail("vpc/DescribeRouteEntryList", "InvalidParameter")
    ),
    "preflight/gitlab.401": _PREFLIGHT[:7] + [fail("GET /user", "401")],
    # gitlab: validate_token()
    "gitlab/success": _GITLAB_OK,
    "gitlab/user.401": [fail("GET /user", "401")],
    "gitlab/user.401-revoked": [fail("GET /user", "401-revoked")],
    "gitlab/token.404-route": [
        ok("GET /user"),
        fail("GET /personal_access_tokens/self", "404-route"),
        ok("GET /projects/:id"),
    ],
    "gitlab/project.403-insufficient_scope": _GITLAB_OK[:2] + [fail("GET /projects/:id", "403-insufficient_scope")],
    "gitlab/project.404-project": _GITLAB_OK[:2] + [fail("GET /projects/:id", "404-project")],
    # link: ensure_security_group()
    "link/existing.success": [
        ok("ecs/DescribeSecurityGroups"),
        ok("ecs/DescribeSecurityGroupAttribute"),
        ok("ecs/ModifySecurityGroupPolicy"),
        ok("ecs/AuthorizeSecurityGroupEgress"),
    ],
    "link/create.success": _LINK_CREATE,
    "link/drift.success": _LINK_DRIFT,
    "link/converged.success": [
        ok("ecs/DescribeSecurityGroups"),
        ok("ecs/DescribeSecurityGroupAttribute", CONVERGED_SG),
    ],
    "link/DescribeSecurityGroups.Forbidden.RAM": [fail("ecs/DescribeSecurityGroups", "Forbidden.RAM")],
    "link/CreateSecurityGroup.InvalidParameter": [_LINK_CREATE[0], fail("ecs/CreateSecurityGroup", "InvalidParameter")],
    "link/DescribeSecurityGroupAttribute.Throttling.User": [
        ok("ecs/DescribeSecurityGroups"),
        fail("ecs/DescribeSecurityGroupAttribute", "Throttling.User"),
    ],
    "link/ModifySecurityGroupPolicy.Forbidden.RAM": _LINK_CREATE[:4]
    + [fail("ecs/ModifySecurityGroupPolicy", "Forbidden.RAM")],
    "link/AuthorizeSecurityGroupEgress.InvalidParameter": _LINK_CREATE[:5]
    + [fail("ecs/AuthorizeSecurityGroupEgress", "InvalidParameter")],
    "link/RevokeSecurityGroupEgress.Forbidden.RAM": _LINK_DRIFT[:2]
    + [fail("ecs/RevokeSecurityGroupEgress", "Forbidden.RAM")],
    "link/RevokeSecurityGroup.Throttling.User": _LINK_DRIFT[:3] + [fail("ecs/RevokeSecurityGroup", "Throttling.User")],
    # eni: ensure_network_interface()
    "eni/converged.success": [ok("ecs/DescribeNetworkInterfaces"), ok("ecs/DescribeNetworkInterfacePermissions")],
    "eni/create.success": _ENI_CREATE
    + [ok("ecs/DescribeNetworkInterfaces", _ATTACHING), ok("ecs/DescribeNetworkInterfaces")],
    "eni/attach-failed": _ENI_CREATE
    + [ok("ecs/DescribeNetworkInterfaces", _ATTACHING), ok("ecs/DescribeNetworkInterfaces", _AVAILABLE)],
    "eni/drift.success": [
        ok("ecs/DescribeNetworkInterfaces"),
        ok("ecs/ModifyNetworkInterfaceAttribute"),
        ok("ecs/DescribeNetworkInterfacePermissions"),
    ],
    "eni/DescribeNetworkInterfaces.Forbidden.RAM": [fail("ecs/DescribeNetworkInterfaces", "Forbidden.RAM")],
    "eni/CreateNetworkInterface.InvalidParameter": [
        _ENI_CREATE[0],
        fail("ecs/CreateNetworkInterface", "InvalidParameter"),
    ],
    "eni/ModifyNetworkInterfaceAttribute.InvalidParameter": [
        ok("ecs/DescribeNetworkInterfaces"),
        fail("ecs/ModifyNetworkInterfaceAttribute", "InvalidParameter"),
    ],
    "eni/DescribeNetworkInterfacePermissions.Throttling.User": [
        ok("ecs/DescribeNetworkInterfaces"),
        fail("ecs/DescribeNetworkInterfacePermissions", "Throttling.User"),
    ],
    "eni/CreateNetworkInterfacePermission.Forbidden.RAM": _ENI_CREATE[:4]
    + [fail("ecs/CreateNetworkInterfacePermission", "Forbidden.RAM")],
    # binding: bind_repository()
    "binding/converged.success": _BIND,
    "binding/create.success": [
        fail("cr/GetNamespace", "NAMESPACE_NOT_EXIST"),
        ok("cr/CreateNamespace"),
        fail("cr/GetRepository", "REPO_NOT_EXIST"),
        ok("cr/CreateRepository"),
        ok("cr/GetRepoSourceCodeRepo", UNBOUND_SOURCE),
        ok("cr/CreateRepoSourceCodeRepo"),
        ok("cr/GetRepoSourceCodeRepo"),
        ok("cr/ListRepoBuildRule", NO_RULES),
        ok("cr/CreateRepoBuildRule"),
    ],
    "binding/drift.success": _BIND[:2]
    + [
        ok("cr/GetRepoSourceCodeRepo", {"OverseaBuild": "true"}),
        ok("cr/UpdateRepoSourceCodeRepo"),
        ok("cr/GetRepoSourceCodeRepo"),
        ok("cr/ListRepoBuildRule"),
    ],
    "binding/GetNamespace.INSTANCE_NOT_EXIST": [fail("cr/GetNamespace", "INSTANCE_NOT_EXIST")],
    "binding/CreateNamespace.INSTANCE_STATUS_NOT_SUPPORT": [
        fail("cr/GetNamespace", "NAMESPACE_NOT_EXIST"),
        fail("cr/CreateNamespace", "INSTANCE_STATUS_NOT_SUPPORT"),
        fail("cr/GetNamespace", "NAMESPACE_NOT_EXIST"),
    ],
    "binding/GetRepository.Throttling.User": [ok("cr/GetNamespace"), fail("cr/GetRepository", "Throttling.User")],
    "binding/CreateRepository.InvalidParameter": [
        ok("cr/GetNamespace"),
        fail("cr/GetRepository", "REPO_NOT_EXIST"),
        fail("cr/CreateRepository", "InvalidParameter"),
    ],
    "binding/GetRepoSourceCodeRepo.Forbidden.RAM": _BIND[:2] + [fail("cr/GetRepoSourceCodeRepo", "Forbidden.RAM")],
    "binding/CreateRepoSourceCodeRepo.INSTANCE_STATUS_NOT_SUPPORT": _BIND[:2]
    + [
        ok("cr/GetRepoSourceCodeRepo", UNBOUND_SOURCE),
        fail("cr/CreateRepoSourceCodeRepo", "INSTANCE_STATUS_NOT_SUPPORT"),
    ],
    "binding/UpdateRepoSourceCodeRepo.Forbidden.RAM": _BIND[:2]
    + [ok("cr/GetRepoSourceCodeRepo", {"OverseaBuild": "true"}), fail("cr/UpdateRepoSourceCodeRepo", "Forbidden.RAM")],
    "binding/ListRepoBuildRule.REPO_NOT_EXIST": _BIND[:3] + [fail("cr/ListRepoBuildRule", "REPO_NOT_EXIST")],
    "binding/CreateRepoBuildRule.InvalidParameter": _BIND[:3]
    + [ok("cr/ListRepoBuildRule", NO_RULES), fail("cr/CreateRepoBuildRule", "InvalidParameter")],
    # build: run_build()
    "build/success": _BUILD_START
    + [
        ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE),
        ok("cr/ListRepoBuildRecordLog"),
        ok("cr/ListRepoBuildRecordLog"),
        ok("cr/GetRepoBuildRecord"),
        ok("cr/GetRepoTag"),
    ],
    "build/GetRepoTag.TAG_NOT_EXIST": _BUILD_START
    + [
        ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE),
        ok("cr/ListRepoBuildRecordLog"),
        ok("cr/ListRepoBuildRecordLog"),
        ok("cr/GetRepoBuildRecord"),
        fail("cr/GetRepoTag", "TAG_NOT_EXIST"),
    ],
    "build/timeout": _BUILD_START
    + [ok("cr/CancelRepoBuildRecord"), ok("cr/ListRepoBuildRecordLog"), ok("cr/GetRepoBuildRecord")],
    "build/CreateBuildRecordByRule.REPO_NOT_EXIST": [fail("cr/CreateBuildRecordByRule", "REPO_NOT_EXIST")],
    "build/GetRepoBuildRecordStatus.Forbidden.RAM": [
        ok("cr/CreateBuildRecordByRule"),
        fail("cr/GetRepoBuildRecordStatus", "Forbidden.RAM"),
    ],
    "build/GetRepoBuildRecordStatus.Throttling.User": [ok("cr/CreateBuildRecordByRule")]
    + [fail("cr/GetRepoBuildRecordStatus", "Throttling.User")] * 5,
    "build/ListRepoBuildRecordLog.InvalidParameter": _BUILD_START[:2]
    + [fail("cr/ListRepoBuildRecordLog", "InvalidParameter")],
    "build/GetRepoBuildRecord.Throttling.User": _BUILD_START[:1]
    + [
        ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE),
        ok("cr/ListRepoBuildRecordLog"),
        ok("cr/ListRepoBuildRecordLog"),
        fail("cr/GetRepoBuildRecord", "Throttling.User"),
        ok("cr/GetRepoBuildRecord"),
    ],
    "build/CancelRepoBuildRecord.INSTANCE_STATUS_NOT_SUPPORT": _BUILD_START
    + [
        fail("cr/CancelRepoBuildRecord", "INSTANCE_STATUS_NOT_SUPPORT"),
        ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE),
        ok("cr/ListRepoBuildRecordLog"),
        ok("cr/GetRepoBuildRecord"),
    ],
    # webhook: ensure_project_hooks()
    "webhook/create.success": [_HOOKS_NONE, ok("POST /projects/:id/hooks", path=HOOKS)],
    "webhook/converged.success": [_HOOKS_OK],
    "webhook/drift.success": [
        ok("GET /projects/:id/hooks", {"[0].tag_push_events": False}, path=HOOKS),
        ok("PUT /projects/:id/hooks/:hook_id", path=f"{HOOKS}/1"),
    ],
    "webhook/list.403": [fail("GET /projects/:id/hooks", "403", path=HOOKS)],
    "webhook/list.404-project": [fail("GET /projects/:id/hooks", "404-project", path=HOOKS)],
    "webhook/create.422-url-blocked": [_HOOKS_NONE, fail("POST /projects/:id/hooks", "422-url-blocked", path=HOOKS)],
    "webhook/update.403": [
        ok("GET /projects/:id/hooks", {"[0].tag_push_events": False}, path=HOOKS),
        fail("PUT /projects/:id/hooks/:hook_id", "403", path=f"{HOOKS}/1"),
    ],
    # teardown: teardown_link()
    "teardown/success": _TEARDOWN_FIND
    + _TEARDOWN_ENI
    + [
        ok("ecs/DeleteNetworkInterface"),
        _ENI_GONE,
        ok("ecs/DescribeSecurityGroups", TAGGED_GROUP),
        ok("ecs/DeleteSecurityGroup"),
    ],
    "teardown/nothing.success": [_ENI_GONE, ok("ecs/DescribeSecurityGroups", NO_GROUPS)],
    "teardown/DeleteNetworkInterfacePermission.Forbidden.RAM": _TEARDOWN_FIND
    + _TEARDOWN_ENI[:2]
    + [fail("ecs/DeleteNetworkInterfacePermission", "Forbidden.RAM")],
    "teardown/DeleteNetworkInterface.InvalidParameter": _TEARDOWN_FIND
    + _TEARDOWN_ENI
    + [fail("ecs/DeleteNetworkInterface", "InvalidParameter")],
    "teardown/DeleteSecurityGroup.DependencyViolation": [
        _ENI_GONE,
        ok("ecs/DescribeSecurityGroups", TAGGED_GROUP),
        ok("ecs/DescribeSecurityGroups", TAGGED_GROUP),
        fail("ecs/DeleteSecurityGroup", "DependencyViolation"),
        ok("ecs/DeleteSecurityGroup"),
    ],
    "teardown/DeleteSecurityGroup.Forbidden.RAM": [
        _ENI_GONE,
        ok("ecs/DescribeSecurityGroups", TAGGED_GROUP),
        ok("ecs/DescribeSecurityGroups", TAGGED_GROUP),
        fail("ecs/DeleteSecurityGroup", "Forbidden.RAM"),
    ],
}
