"""Generate the contract cassettes (``tests/cassettes/``) from the documented examples.

Run ``python tests/contract/make_cassettes.py`` after changing ``tests/contract/examples/*.json``
or a scenario below; ``--check`` only verifies that the committed cassettes are what this script
writes (a test runs it). The output is deterministic: no clock, no randomness.

Three kinds of cassettes:

* ``actions/<product>/<Action>.success.yaml`` (and ``actions/gitlab/<endpoint>.success.yaml``): the
  documented example answer of one action, verbatim. The fidelity test reads them.
* ``actions/<product>/<Action>.error.<Code>.yaml``: one error answer in the documented error shape
  ``{RequestId, HostId, Code, Message, Recommend}`` (HTTP 4xx/5xx), or CR's HTTP 200 with
  ``IsSuccess=false``; GitLab's documented error bodies.
* ``stages/<stage>/<scenario>.yaml``: the interactions one stage function makes, in order, built
  from the documented examples. A few scenarios need a state the examples do not show (an empty
  list, a build that has ended, a rule that drifted); those answers are the documented example with
  the named fields changed (see :func:`ok`), so their shape stays the documented one.

Requests are matched on method, host, path and the Alibaba ``Action`` (``x-acs-action`` header),
never on signature, nonce or timestamp, so the request side holds only those.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
CASSETTES = HERE.parent / "cassettes"

REGION = "cn-hangzhou"
# The SDKs' default endpoints for cn-hangzhou (endpoint rule "regional" and the products' endpoint maps).
HOSTS = {"cr": "cr.cn-hangzhou.aliyuncs.com", "ecs": "ecs-cn-hangzhou.aliyuncs.com", "vpc": "vpc.aliyuncs.com"}
VERSIONS = {"cr": "2018-12-01", "ecs": "2014-05-26", "vpc": "2016-04-28"}
GITLAB_URL = "http://192.168.1.20"  # the contract spec's gitlab.endpoint

# Error answers: HTTP status and the service's message. ``None`` status = CR's HTTP 200 + IsSuccess=false.
ERRORS: dict[str, tuple[int | None, str]] = {
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InvalidParameter": (400, "The specified parameter is invalid."),
    "Forbidden.RAM": (403, "User not authorized to operate on the specified resource, or this API doesn't "
                           "support RAM."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "INSTANCE_NOT_EXIST": (None, ""),
    "NAMESPACE_NOT_EXIST": (None, ""),
    "REPO_NOT_EXIST": (None, ""),
    "INSTANCE_STATUS_NOT_SUPPORT": (None, ""),
}

# GitLab's documented error bodies (shared/api/gitlab-notes.md section 2; lib/api/api_guard.rb).
_BEARER = 'Bearer realm="Protected by OAuth 2.0", error="{error}", error_description="{description}"'
GITLAB_ERRORS: dict[str, tuple[int, Any, dict[str, str]]] = {
    "401": (401, {"message": "401 Unauthorized"}, {}),
    "401-revoked": (401, {"error": "invalid_token",
                          "error_description": "Token was revoked. You have to re-authorize from the user."},
                    {"WWW-Authenticate": _BEARER.format(
                        error="invalid_token",
                        description="Token was revoked. You have to re-authorize from the user.")}),
    "403-insufficient_scope": (403, {"error": "insufficient_scope",
                                     "error_description": "The request requires higher privileges than provided "
                                                          "by the access token.",
                                     "scope": "api read_api"},
                               {"WWW-Authenticate": _BEARER.format(
                                   error="insufficient_scope",
                                   description="The request requires higher privileges than provided by the "
                                               "access token.") + ', scope="api read_api"'}),
    "403": (403, {"message": "403 Forbidden"}, {}),
    "404-project": (404, {"message": "404 Project Not Found"}, {}),
    "404-route": (404, {"error": "404 Not Found"}, {}),
}

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
}


def load_examples() -> tuple[dict[str, Any], dict[str, Any]]:
    """The documented examples: (alibaba ``product/Action`` -> record, gitlab ``METHOD /route`` -> record)."""
    alibaba = json.loads((EXAMPLES / "alibaba.json").read_text(encoding="utf-8"))["examples"]
    gitlab = json.loads((EXAMPLES / "gitlab.json").read_text(encoding="utf-8"))["examples"]
    return alibaba, gitlab


ALIBABA, GITLAB = load_examples()


# -- interactions -----------------------------------------------------------------------------
def _request_id(*parts: str) -> str:
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest().upper()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _body(value: Any) -> dict[str, str]:
    return {"string": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}


def rpc(product: str, action: str, status: int, body: Any) -> dict[str, Any]:
    """One Alibaba Cloud RPC interaction (V3 signature: the action travels in ``x-acs-action``)."""
    headers = {"Content-Type": ["application/json;charset=utf-8"]}
    if isinstance(body, dict) and body.get("RequestId"):
        headers["x-acs-request-id"] = [body["RequestId"]]
    return {
        "request": {"body": None, "headers": {"x-acs-action": [action], "x-acs-version": [VERSIONS[product]]},
                    "method": "POST", "uri": f"https://{HOSTS[product]}/"},
        "response": {"status": {"code": status, "message": _REASONS[status]}, "headers": headers,
                     "body": _body(body)},
    }


def rest(method: str, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One GitLab REST v4 interaction."""
    out = {"Content-Type": ["application/json"]}
    out.update({k: [v] for k, v in (headers or {}).items()})
    return {
        "request": {"body": None, "headers": {}, "method": method, "uri": f"{GITLAB_URL}{path}"},
        "response": {"status": {"code": status, "message": _REASONS[status]}, "headers": out, "body": _body(body)},
    }


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 503: "Service Unavailable"}


def _set(body: Any, path: str, value: Any) -> None:
    """Set ``A.B[0].C`` in a nested body."""
    node = body
    parts = path.replace("[", ".[").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        if last:
            node[key] = value
        else:
            node = node[key]


def ok(key: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The documented success answer of ``key`` (``cr/GetInstance`` or ``GET /user``), optionally changed.

    Args:
        key: the example's key.
        changes: ``{"A.B[0].C": value}`` fields to change (for states the example does not show).
    """
    if key in GITLAB:
        record = GITLAB[key]
        body = copy.deepcopy(record["body"])
        for path, value in (changes or {}).items():
            _set(body, path, value)
        return rest(record["method"], record["path"], record["status"], body)
    record = ALIBABA[key]
    body = copy.deepcopy(record["body"])
    for path, value in (changes or {}).items():
        _set(body, path, value)
    return rpc(record["product"], record["action"], 200, body)


def fail(key: str, code: str) -> dict[str, Any]:
    """An error answer of ``key`` with ``code`` (Alibaba code, or a :data:`GITLAB_ERRORS` name)."""
    if key in GITLAB:
        status, body, headers = GITLAB_ERRORS[code]
        record = GITLAB[key]
        return rest(record["method"], record["path"], status, body, headers)
    product, action = key.split("/")
    status, message = ERRORS[code]
    request_id = _request_id(action, code)
    if status is None:  # CR business error: HTTP 200, IsSuccess=false, the code in Code
        return rpc(product, action, 200, {"RequestId": request_id, "IsSuccess": False, "Code": code})
    return rpc(product, action, status, {
        "RequestId": request_id, "HostId": HOSTS[product], "Code": code, "Message": message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product={product}"})


# -- scenarios: the calls of one stage function, in order ------------------------------------------
GITLAB_SG_INGRESS = {  # the GitLab ECS's group: the documented shape, holding the reverse-access rule
    "SecurityGroupId": "sg-bp1gitlab000000****", "SecurityGroupName": "gitlab", "Description": "gitlab server",
    "Permissions.Permission": [{
        "SecurityGroupRuleId": "sgr-bp1gitlab0ingres****", "Direction": "ingress", "Policy": "Accept",
        "Priority": "1", "IpProtocol": "TCP", "PortRange": "80/80", "DestCidrIp": "", "SourceCidrIp": "100.104.0.0/16",
        "SourcePortRange": "", "NicType": "intranet", "Description": "ACR VPC build reverse access",
        "CreateTime": "2024-03-01T08:00:00Z"}],
}
_SGA = ALIBABA["ecs/DescribeSecurityGroupAttribute"]["body"]["Permissions"]["Permission"]
MAVEN_RULE = {**_SGA[0], "SecurityGroupRuleId": "sgr-bp1maven0egress0****", "PortRange": "8081/8081",
              "DestCidrIp": "192.168.1.30/32", "Description": "Allowed 192.168.1.30:8081"}
EXTRA_EGRESS = {**_SGA[0], "SecurityGroupRuleId": "sgr-bp1extra0egress0****", "PortRange": "443/443",
                "DestCidrIp": "0.0.0.0/0", "Description": "added by hand"}
EXTRA_INGRESS = {**_SGA[0], "SecurityGroupRuleId": "sgr-bp1extra0ingress****", "Direction": "ingress",
                 "PortRange": "22/22", "DestCidrIp": "", "SourceCidrIp": "0.0.0.0/0", "Description": "ssh"}
CONVERGED_SG = {"InnerAccessPolicy": "Drop", "Permissions.Permission": [_SGA[0], _SGA[1], MAVEN_RULE]}
DRIFTED_SG = {"InnerAccessPolicy": "Drop",
              "Permissions.Permission": [_SGA[0], _SGA[1], MAVEN_RULE, EXTRA_EGRESS, EXTRA_INGRESS]}
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
    return calls[:index] + list(replacement) + calls[index + 1:]


_PREFLIGHT = _PREFLIGHT_CR + _PREFLIGHT_HOST + _PREFLIGHT_REPO + _GITLAB_OK
_DATACENTER = _PREFLIGHT_CR + _PREFLIGHT_VBR + _PREFLIGHT_REPO
_BIND = [ok("cr/GetNamespace"), ok("cr/GetRepository"), ok("cr/GetRepoSourceCodeRepo"), ok("cr/ListRepoBuildRule")]
_BUILD_START = [ok("cr/CreateBuildRecordByRule"), ok("cr/GetRepoBuildRecordStatus"), ok("cr/ListRepoBuildRecordLog")]
_BUILD_DONE = {"BuildStatus": "success"}  # the documented lower-case value (Go SDK / GetRepoBuildRecordStatus doc)
_LINK_CREATE = [ok("ecs/DescribeSecurityGroups", NO_GROUPS), ok("ecs/CreateSecurityGroup"),
                ok("ecs/DescribeSecurityGroupAttribute"), ok("ecs/ModifySecurityGroupPolicy"),
                ok("ecs/AuthorizeSecurityGroupEgress")]
_LINK_DRIFT = [ok("ecs/DescribeSecurityGroups"), ok("ecs/DescribeSecurityGroupAttribute", DRIFTED_SG),
               ok("ecs/RevokeSecurityGroupEgress"), ok("ecs/RevokeSecurityGroup")]
_ENI_CREATE = [ok("ecs/DescribeNetworkInterfaces", NO_ENIS), ok("ecs/CreateNetworkInterface"),
               ok("ecs/DescribeNetworkInterfacePermissions", NO_PERMISSIONS),
               ok("ecs/CreateNetworkInterfacePermission")]
_ATTACHING = {"NetworkInterfaceSets.NetworkInterfaceSet[0].Status": "Attaching"}
_AVAILABLE = {"NetworkInterfaceSets.NetworkInterfaceSet[0].Status": "Available"}

SCENARIOS: dict[str, list[dict[str, Any]]] = {
    # preflight: observe() / run_preflight()
    "preflight/ecs.success": _PREFLIGHT,
    "preflight/datacenter.success": _DATACENTER,
    "preflight/GetInstance.Forbidden.RAM": _swap(_PREFLIGHT, 0, fail("cr/GetInstance", "Forbidden.RAM")),
    "preflight/GetInstance.INSTANCE_NOT_EXIST": _swap(_PREFLIGHT, 0, fail("cr/GetInstance", "INSTANCE_NOT_EXIST")),
    "preflight/DescribeVpcAttribute.Throttling.User": _swap(_PREFLIGHT, 1, fail("vpc/DescribeVpcAttribute",
                                                                                "Throttling.User")),
    "preflight/DescribeVSwitchAttributes.InvalidParameter": _swap(_PREFLIGHT, 2, fail(
        "vpc/DescribeVSwitchAttributes", "InvalidParameter")),
    "preflight/DescribeInstances.Forbidden.RAM": _PREFLIGHT[:3] + [fail("ecs/DescribeInstances", "Forbidden.RAM")]
    + _PREFLIGHT_REPO + _GITLAB_OK,
    "preflight/DescribeSecurityGroupAttribute.Throttling.User": _swap(_PREFLIGHT, 4, fail(
        "ecs/DescribeSecurityGroupAttribute", "Throttling.User")),
    "preflight/GetRepository.REPO_NOT_EXIST": _PREFLIGHT[:5] + [fail("cr/GetRepository", "REPO_NOT_EXIST")]
    + _GITLAB_OK,
    "preflight/GetRepoSourceCodeRepo.Forbidden.RAM": _swap(_PREFLIGHT, 6, fail("cr/GetRepoSourceCodeRepo",
                                                                               "Forbidden.RAM")),
    "preflight/DescribeVirtualBorderRouters.Forbidden.RAM": _PREFLIGHT_CR + [
        fail("vpc/DescribeVirtualBorderRouters", "Forbidden.RAM")] + _PREFLIGHT_REPO,
    "preflight/DescribeVirtualBorderRouters.ServiceUnavailable": _PREFLIGHT_CR + [
        fail("vpc/DescribeVirtualBorderRouters", "ServiceUnavailable")] + _PREFLIGHT_REPO,
    "preflight/DescribeRouteEntryList.InvalidParameter": _swap(_DATACENTER, 4, fail("vpc/DescribeRouteEntryList",
                                                                                    "InvalidParameter")),
    "preflight/gitlab.401": _PREFLIGHT[:7] + [fail("GET /user", "401")],
    # gitlab: validate_token()
    "gitlab/success": _GITLAB_OK,
    "gitlab/user.401": [fail("GET /user", "401")],
    "gitlab/user.401-revoked": [fail("GET /user", "401-revoked")],
    "gitlab/token.404-route": [ok("GET /user"), fail("GET /personal_access_tokens/self", "404-route"),
                               ok("GET /projects/:id")],
    "gitlab/project.403-insufficient_scope": _GITLAB_OK[:2] + [fail("GET /projects/:id", "403-insufficient_scope")],
    "gitlab/project.404-project": _GITLAB_OK[:2] + [fail("GET /projects/:id", "404-project")],
    # link: ensure_security_group()
    "link/existing.success": [ok("ecs/DescribeSecurityGroups"), ok("ecs/DescribeSecurityGroupAttribute"),
                              ok("ecs/ModifySecurityGroupPolicy"), ok("ecs/AuthorizeSecurityGroupEgress")],
    "link/create.success": _LINK_CREATE,
    "link/drift.success": _LINK_DRIFT,
    "link/converged.success": [ok("ecs/DescribeSecurityGroups"), ok("ecs/DescribeSecurityGroupAttribute",
                                                                    CONVERGED_SG)],
    "link/DescribeSecurityGroups.Forbidden.RAM": [fail("ecs/DescribeSecurityGroups", "Forbidden.RAM")],
    "link/CreateSecurityGroup.InvalidParameter": [_LINK_CREATE[0], fail("ecs/CreateSecurityGroup",
                                                                        "InvalidParameter")],
    "link/DescribeSecurityGroupAttribute.Throttling.User": [ok("ecs/DescribeSecurityGroups"), fail(
        "ecs/DescribeSecurityGroupAttribute", "Throttling.User")],
    "link/ModifySecurityGroupPolicy.Forbidden.RAM": _LINK_CREATE[:3] + [fail("ecs/ModifySecurityGroupPolicy",
                                                                             "Forbidden.RAM")],
    "link/AuthorizeSecurityGroupEgress.InvalidParameter": _LINK_CREATE[:4] + [fail(
        "ecs/AuthorizeSecurityGroupEgress", "InvalidParameter")],
    "link/RevokeSecurityGroupEgress.Forbidden.RAM": _LINK_DRIFT[:2] + [fail("ecs/RevokeSecurityGroupEgress",
                                                                            "Forbidden.RAM")],
    "link/RevokeSecurityGroup.Throttling.User": _LINK_DRIFT[:3] + [fail("ecs/RevokeSecurityGroup",
                                                                        "Throttling.User")],
    # eni: ensure_network_interface()
    "eni/converged.success": [ok("ecs/DescribeNetworkInterfaces"), ok("ecs/DescribeNetworkInterfacePermissions")],
    "eni/create.success": _ENI_CREATE + [ok("ecs/DescribeNetworkInterfaces", _ATTACHING),
                                         ok("ecs/DescribeNetworkInterfaces")],
    "eni/attach-failed": _ENI_CREATE + [ok("ecs/DescribeNetworkInterfaces", _ATTACHING),
                                        ok("ecs/DescribeNetworkInterfaces", _AVAILABLE)],
    "eni/drift.success": [ok("ecs/DescribeNetworkInterfaces"), ok("ecs/ModifyNetworkInterfaceAttribute"),
                          ok("ecs/DescribeNetworkInterfacePermissions")],
    "eni/DescribeNetworkInterfaces.Forbidden.RAM": [fail("ecs/DescribeNetworkInterfaces", "Forbidden.RAM")],
    "eni/CreateNetworkInterface.InvalidParameter": [_ENI_CREATE[0], fail("ecs/CreateNetworkInterface",
                                                                         "InvalidParameter")],
    "eni/ModifyNetworkInterfaceAttribute.InvalidParameter": [ok("ecs/DescribeNetworkInterfaces"), fail(
        "ecs/ModifyNetworkInterfaceAttribute", "InvalidParameter")],
    "eni/DescribeNetworkInterfacePermissions.Throttling.User": [ok("ecs/DescribeNetworkInterfaces"), fail(
        "ecs/DescribeNetworkInterfacePermissions", "Throttling.User")],
    "eni/CreateNetworkInterfacePermission.Forbidden.RAM": _ENI_CREATE[:3] + [fail(
        "ecs/CreateNetworkInterfacePermission", "Forbidden.RAM")],
    # binding: bind_repository()
    "binding/converged.success": _BIND,
    "binding/create.success": [
        fail("cr/GetNamespace", "NAMESPACE_NOT_EXIST"), ok("cr/CreateNamespace"),
        fail("cr/GetRepository", "REPO_NOT_EXIST"), ok("cr/CreateRepository"),
        ok("cr/GetRepoSourceCodeRepo", UNBOUND_SOURCE), ok("cr/CreateRepoSourceCodeRepo"),
        ok("cr/GetRepoSourceCodeRepo"), ok("cr/ListRepoBuildRule", NO_RULES), ok("cr/CreateRepoBuildRule")],
    "binding/drift.success": _BIND[:2] + [ok("cr/GetRepoSourceCodeRepo", {"OverseaBuild": "true"}),
                                          ok("cr/UpdateRepoSourceCodeRepo"), ok("cr/GetRepoSourceCodeRepo"),
                                          ok("cr/ListRepoBuildRule")],
    "binding/GetNamespace.INSTANCE_NOT_EXIST": [fail("cr/GetNamespace", "INSTANCE_NOT_EXIST")],
    "binding/CreateNamespace.INSTANCE_STATUS_NOT_SUPPORT": [
        fail("cr/GetNamespace", "NAMESPACE_NOT_EXIST"), fail("cr/CreateNamespace", "INSTANCE_STATUS_NOT_SUPPORT"),
        fail("cr/GetNamespace", "NAMESPACE_NOT_EXIST")],
    "binding/GetRepository.Throttling.User": [ok("cr/GetNamespace"), fail("cr/GetRepository", "Throttling.User")],
    "binding/CreateRepository.InvalidParameter": [ok("cr/GetNamespace"), fail("cr/GetRepository", "REPO_NOT_EXIST"),
                                                  fail("cr/CreateRepository", "InvalidParameter")],
    "binding/GetRepoSourceCodeRepo.Forbidden.RAM": _BIND[:2] + [fail("cr/GetRepoSourceCodeRepo", "Forbidden.RAM")],
    "binding/CreateRepoSourceCodeRepo.INSTANCE_STATUS_NOT_SUPPORT": _BIND[:2] + [
        ok("cr/GetRepoSourceCodeRepo", UNBOUND_SOURCE),
        fail("cr/CreateRepoSourceCodeRepo", "INSTANCE_STATUS_NOT_SUPPORT")],
    "binding/UpdateRepoSourceCodeRepo.Forbidden.RAM": _BIND[:2] + [
        ok("cr/GetRepoSourceCodeRepo", {"OverseaBuild": "true"}), fail("cr/UpdateRepoSourceCodeRepo",
                                                                       "Forbidden.RAM")],
    "binding/ListRepoBuildRule.REPO_NOT_EXIST": _BIND[:3] + [fail("cr/ListRepoBuildRule", "REPO_NOT_EXIST")],
    "binding/CreateRepoBuildRule.InvalidParameter": _BIND[:3] + [ok("cr/ListRepoBuildRule", NO_RULES),
                                                                 fail("cr/CreateRepoBuildRule", "InvalidParameter")],
    # build: run_build()
    "build/success": _BUILD_START + [ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE), ok("cr/ListRepoBuildRecordLog"),
                                     ok("cr/ListRepoBuildRecordLog"), ok("cr/GetRepoBuildRecord")],
    "build/timeout": _BUILD_START + [ok("cr/CancelRepoBuildRecord"), ok("cr/ListRepoBuildRecordLog"),
                                     ok("cr/GetRepoBuildRecord")],
    "build/CreateBuildRecordByRule.REPO_NOT_EXIST": [fail("cr/CreateBuildRecordByRule", "REPO_NOT_EXIST")],
    "build/GetRepoBuildRecordStatus.Forbidden.RAM": [ok("cr/CreateBuildRecordByRule"), fail(
        "cr/GetRepoBuildRecordStatus", "Forbidden.RAM")],
    "build/GetRepoBuildRecordStatus.Throttling.User": [ok("cr/CreateBuildRecordByRule")] + [
        fail("cr/GetRepoBuildRecordStatus", "Throttling.User")] * 5,
    "build/ListRepoBuildRecordLog.InvalidParameter": _BUILD_START[:2] + [fail("cr/ListRepoBuildRecordLog",
                                                                              "InvalidParameter")],
    "build/GetRepoBuildRecord.Throttling.User": _BUILD_START[:1] + [
        ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE), ok("cr/ListRepoBuildRecordLog"),
        ok("cr/ListRepoBuildRecordLog"), fail("cr/GetRepoBuildRecord", "Throttling.User"),
        ok("cr/GetRepoBuildRecord")],
    "build/CancelRepoBuildRecord.INSTANCE_STATUS_NOT_SUPPORT": _BUILD_START + [
        fail("cr/CancelRepoBuildRecord", "INSTANCE_STATUS_NOT_SUPPORT"),
        ok("cr/GetRepoBuildRecordStatus", _BUILD_DONE), ok("cr/ListRepoBuildRecordLog"), ok("cr/GetRepoBuildRecord")],
}


# -- output ------------------------------------------------------------------------------------
def _slug(key: str) -> str:
    """``GET /projects/:id`` -> ``GET_projects_id``; ``cr/GetInstance`` -> ``GetInstance``."""
    if key in GITLAB:
        method, route = key.split(" ", 1)
        return method + "_" + "_".join(p.lstrip(":") for p in route.strip("/").split("/"))
    return key.split("/")[1]


def action_cassette_name(key: str, outcome: str = "success") -> str:
    """Relative path of an action's cassette: ``actions/cr/GetInstance.success.yaml``, ``... .error.<Code>.yaml``."""
    product = "gitlab" if key in GITLAB else key.split("/")[0]
    suffix = "success" if outcome == "success" else f"error.{outcome}"
    return f"actions/{product}/{_slug(key)}.{suffix}.yaml"


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when PyYAML has it: much faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def render(interactions: list[dict[str, Any]]) -> str:
    """A vcrpy cassette (format version 1) as YAML text."""
    return yaml.dump({"interactions": interactions, "version": 1}, Dumper=_DUMPER, sort_keys=False,
                     allow_unicode=True, width=120, default_flow_style=False)


def parse(text: str) -> Any:
    """A cassette's YAML text as data."""
    return yaml.load(text, Loader=_LOADER)


def cassettes() -> dict[str, str]:
    """Every cassette this script writes: relative path -> YAML text."""
    out: dict[str, str] = {}
    for key in list(ALIBABA) + list(GITLAB):
        out[action_cassette_name(key)] = render([ok(key)])
    for key, codes in ACTION_ERRORS.items():
        for code in codes:
            out[action_cassette_name(key, code)] = render([fail(key, code)])
    for name, calls in SCENARIOS.items():
        out[f"stages/{name}.yaml"] = render(calls)
    return dict(sorted(out.items()))


def stale(root: Path = CASSETTES) -> list[str]:
    """Cassettes under ``root/actions`` and ``root/stages`` that differ from, lack or exceed what this script writes."""
    expected = cassettes()
    problems = [f"{name}: differs" if (root / name).exists() else f"{name}: missing"
                for name, text in expected.items()
                if not (root / name).exists() or parse((root / name).read_text(encoding="utf-8")) != parse(text)]
    for sub in ("actions", "stages"):
        for path in sorted((root / sub).rglob("*.yaml")) if (root / sub).exists() else []:
            name = path.relative_to(root).as_posix()
            if name not in expected:
                problems.append(f"{name}: not generated by make_cassettes.py")
    return problems


def write(root: Path = CASSETTES) -> int:
    """Write every cassette under ``root``; returns how many."""
    items = cassettes()
    for name, text in items.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed cassettes")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(line)
        return 1 if problems else 0
    print(f"wrote {write()} cassettes under {CASSETTES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
