"""One handler per CR Action: parse, call the model, shape the reply.

Shapes and value types follow the SDK response-body models of alibabacloud-cr20181201 2.2.5
(see ../shared/api/alibaba-api.md §1), quirks included: ``TotalCount`` is a string in
ListNamespace/ListRepository/ListRepoBuildRule/ListRepoBuildRecord/ListRepoBuildRecordLog and an
int in ListInstance; GetInstance's CreateTime is int ms while ListInstance's is a string;
GetRepoBuildRecord's Start/EndTime are int ms while ListRepoBuildRecord's are strings; and
GetRepoSourceCodeRepo answers AutoBuild/OverseaBuild/DisableCacheBuild as ``"true"``/``"false"``.
CR has no RegionId parameter. The server adds RequestId, IsSuccess=true and Code="success".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.errors import InvalidParameter, MissingParameter
from ..core.registry import Service, register_service
from . import builds
from .models import CODE_REPO_TYPES, BuildRecord, Instance, Namespace, Repository

if TYPE_CHECKING:  # pragma: no cover
    from ..core.request import RpcRequest
    from ..world import World

service = register_service(Service("cr", "2018-12-01", host="cr.{region}.aliyuncs.com"))

T = TypeVar("T")
_PUSH_TYPES = ("GIT_BRANCH", "GIT_TAG")
_REPO_TYPES = ("PRIVATE", "PUBLIC")


def _page(items: list[T], req: RpcRequest, default_size: int = 30, max_size: int = 100) -> tuple[list[T], int, int]:
    page_no = max(1, req.get_int("PageNo", 1) or 1)
    page_size = min(max(1, req.get_int("PageSize", default_size) or default_size), max_size)
    start = (page_no - 1) * page_size
    return items[start : start + page_size], page_no, page_size


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _code_repo_type(req: RpcRequest) -> str:
    value = req.require("CodeRepoType").upper()
    if value not in CODE_REPO_TYPES:
        raise InvalidParameter("CodeRepoType", f"Valid values: {', '.join(CODE_REPO_TYPES)}.")
    return value


# -- instances ---------------------------------------------------------------------------------
def _instance_tags(inst: Instance) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in inst.tags.items()]


@service.action("GetInstance")
def get_instance(world: World, req: RpcRequest) -> dict[str, Any]:
    inst = world.cr.instance(req.require("InstanceId"))
    return {
        "InstanceId": inst.instance_id,
        "InstanceName": inst.name,
        "InstanceSpecification": inst.specification,
        "InstanceStatus": inst.status,
        "InstanceIssue": "",
        "CreateTime": inst.create_ms,
        "ModifiedTime": inst.create_ms,
        "ResourceGroupId": inst.resource_group_id,
        "Tags": _instance_tags(inst),
    }


@service.action("ListInstance")
def list_instance(world: World, req: RpcRequest) -> dict[str, Any]:
    found = world.cr.list_instances(req.get("InstanceName"), req.get("InstanceStatus"))
    page, page_no, page_size = _page(found, req)
    return {
        "PageNo": page_no,
        "PageSize": page_size,
        "TotalCount": len(found),
        "Instances": [
            {
                "InstanceId": i.instance_id,
                "InstanceName": i.name,
                "InstanceSpecification": i.specification,
                "InstanceStatus": i.status,
                "InstanceIssue": "",
                "RegionId": i.region,
                "CreateTime": _iso(i.create_ms),
                "ModifiedTime": _iso(i.create_ms),
                "ResourceGroupId": i.resource_group_id,
                "Tags": _instance_tags(i),
            }
            for i in page
        ],
    }


# -- namespaces --------------------------------------------------------------------------------
def _namespace(inst: Instance, ns: Namespace) -> dict[str, Any]:
    return {
        "InstanceId": ns.instance_id,
        "NamespaceId": ns.namespace_id,
        "NamespaceName": ns.name,
        "NamespaceStatus": "NORMAL",
        "AutoCreateRepo": ns.auto_create_repo,
        "DefaultRepoType": ns.default_repo_type,
        "ResourceGroupId": inst.resource_group_id,
    }


@service.action("GetNamespace")
def get_namespace(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id = req.require("InstanceId")
    name, namespace_id = req.get("NamespaceName"), req.get("NamespaceId")
    if not name and not namespace_id:
        raise MissingParameter("NamespaceName")
    ns = world.cr.namespace(instance_id, name, namespace_id)
    return _namespace(world.cr.instance(instance_id), ns)


@service.action("CreateNamespace", writes=True)
def create_namespace(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id = req.require("InstanceId")
    name = req.require("NamespaceName")
    default_type = (req.get("DefaultRepoType") or "PRIVATE").upper()
    if default_type not in _REPO_TYPES:
        raise InvalidParameter("DefaultRepoType", "Valid values: PRIVATE, PUBLIC.")
    world.cr.writable_instance(instance_id)
    world.cr.add_namespace(instance_id, name, bool(req.get_bool("AutoCreateRepo", False)), default_type)
    return {}


@service.action("ListNamespace")
def list_namespace(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id = req.require("InstanceId")
    inst = world.cr.instance(instance_id)
    found = world.cr.list_namespaces(instance_id, req.get("NamespaceName"))
    status = req.get("NamespaceStatus")
    if status and status not in ("NORMAL", "ALL"):
        found = []
    page, page_no, page_size = _page(found, req)
    return {
        "PageNo": page_no,
        "PageSize": page_size,
        "TotalCount": str(len(found)),
        "Namespaces": [_namespace(inst, ns) for ns in page],
    }


# -- repositories ------------------------------------------------------------------------------
def _repository(world: World, repo: Repository) -> dict[str, Any]:
    auto = repo.source is not None and repo.source.auto_build
    return {
        "RepoId": repo.repo_id,
        "InstanceId": repo.instance_id,
        "RepoNamespaceName": repo.namespace,
        "RepoName": repo.name,
        "RepoType": repo.repo_type,
        "RepoStatus": "NORMAL",
        "RepoBuildType": "AUTO" if auto else "MANUAL",
        "Summary": repo.summary,
        "TagImmutability": repo.tag_immutability,
        "ResourceGroupId": world.cr.instance(repo.instance_id).resource_group_id,
        "CreateTime": repo.create_ms,
        "ModifiedTime": repo.modified_ms,
    }


@service.action("GetRepository")
def get_repository(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id = req.require("InstanceId")
    repo_id = req.get("RepoId")
    if not repo_id:
        namespace, name = req.get("RepoNamespaceName"), req.get("RepoName")
        if not namespace or not name:
            raise MissingParameter("RepoId")
        repo = world.cr.repository(instance_id, namespace=namespace, name=name)
    else:
        repo = world.cr.repository(instance_id, repo_id)
    return {**_repository(world, repo), "Detail": repo.detail}


@service.action("CreateRepository", writes=True)
def create_repository(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id = req.require("InstanceId")
    namespace, name = req.require("RepoNamespaceName"), req.require("RepoName")
    repo_type = req.require("RepoType").upper()
    summary = req.require("Summary")
    if repo_type not in _REPO_TYPES:
        raise InvalidParameter("RepoType", "Valid values: PRIVATE, PUBLIC.")
    repo = world.cr.create_repository(
        instance_id,
        namespace,
        name,
        repo_type,
        summary,
        req.get("Detail") or "",
        bool(req.get_bool("TagImmutability", False)),
    )
    return {"RepoId": repo.repo_id}


@service.action("ListRepository")
def list_repository(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id = req.require("InstanceId")
    found = world.cr.list_repositories(
        instance_id, req.get("RepoNamespaceName"), req.get("RepoName"), req.get("RepoStatus")
    )
    page, page_no, page_size = _page(found, req)
    return {
        "PageNo": page_no,
        "PageSize": page_size,
        "TotalCount": str(len(found)),
        "Repositories": [_repository(world, r) for r in page],
    }


# -- source-code binding -----------------------------------------------------------------------
@service.action("GetRepoSourceCodeRepo")
def get_repo_source_code_repo(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id = req.require("InstanceId"), req.require("RepoId")
    src = world.cr.source_binding(instance_id, repo_id)
    repo = world.cr.repository(instance_id, repo_id)
    return {
        "RepoId": repo_id,
        "CodeRepoType": src.code_repo_type,
        "CodeRepoDomain": world.cr.source_domain(repo),
        "CodeRepoNamespaceName": src.namespace,
        "CodeRepoName": src.name,
        "AutoBuild": _flag(src.auto_build),
        "OverseaBuild": _flag(src.oversea_build),
        "DisableCacheBuild": _flag(src.disable_cache_build),
    }


def _source_params(req: RpcRequest) -> tuple[str, str, str, str, str]:
    return (
        req.require("InstanceId"),
        req.require("RepoId"),
        _code_repo_type(req),
        req.require("CodeRepoNamespaceName"),
        req.require("CodeRepoName"),
    )


@service.action("CreateRepoSourceCodeRepo", writes=True)
def create_repo_source_code_repo(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id, ctype, namespace, name = _source_params(req)
    world.cr.bind_source(
        instance_id,
        repo_id,
        ctype,
        namespace,
        name,
        bool(req.get_bool("AutoBuild", False)),
        bool(req.get_bool("OverseaBuild", False)),
        bool(req.get_bool("DisableCacheBuild", False)),
    )
    return {}


@service.action("UpdateRepoSourceCodeRepo", writes=True)
def update_repo_source_code_repo(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id, ctype, namespace, name = _source_params(req)
    world.cr.update_source(
        instance_id,
        repo_id,
        ctype,
        namespace,
        name,
        req.get_bool("AutoBuild"),
        req.get_bool("OverseaBuild"),
        req.get_bool("DisableCacheBuild"),
    )
    return {}


# -- build rules -------------------------------------------------------------------------------
@service.action("CreateRepoBuildRule", writes=True)
def create_repo_build_rule(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id = req.require("InstanceId"), req.require("RepoId")
    push_type = req.require("PushType").upper()
    push_name, image_tag = req.require("PushName"), req.require("ImageTag")
    if push_type not in _PUSH_TYPES:
        raise InvalidParameter("PushType", "Valid values: GIT_BRANCH, GIT_TAG.")
    world.cr.writable_instance(instance_id)
    repo = world.cr.repository(instance_id, repo_id)
    rule = world.cr.add_rule(
        repo,
        push_type,
        push_name,
        image_tag,
        req.get("DockerfileLocation") or "/",
        req.get("DockerfileName") or "Dockerfile",
        req.get_list("Platforms") or None,
        req.get_list("BuildArgs"),
    )
    return {"BuildRuleId": rule.build_rule_id}


@service.action("ListRepoBuildRule")
def list_repo_build_rule(world: World, req: RpcRequest) -> dict[str, Any]:
    repo = world.cr.repository(req.require("InstanceId"), req.require("RepoId"))
    rules = list(repo.rules.values())
    page, page_no, page_size = _page(rules, req)
    return {
        "PageNo": page_no,
        "PageSize": page_size,
        "TotalCount": str(len(rules)),
        "BuildRules": [
            {
                "BuildRuleId": r.build_rule_id,
                "PushType": r.push_type,
                "PushName": r.push_name,
                "ImageTag": r.image_tag,
                "DockerfileLocation": r.dockerfile_location,
                "DockerfileName": r.dockerfile_name,
                "Platforms": list(r.platforms),
                "BuildArgs": list(r.build_args),
            }
            for r in page
        ],
    }


# -- builds ------------------------------------------------------------------------------------
@service.action("CreateBuildRecordByRule", writes=True)
def create_build_record_by_rule(world: World, req: RpcRequest) -> dict[str, Any]:
    record = world.cr.start_build(req.require("InstanceId"), req.require("RepoId"), req.require("BuildRuleId"))
    return {"BuildRecordId": record.build_record_id}


def _image(record: BuildRecord) -> dict[str, str]:
    return {"RepoNamespaceName": record.namespace, "RepoName": record.name, "ImageTag": record.image_tag}


@service.action("GetRepoTag")
def get_repo_tag(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id, tag = req.require("InstanceId"), req.require("RepoId"), req.require("Tag")
    record = world.cr.tag(instance_id, repo_id, tag)
    digest = builds.image_digest(record)
    pushed_ms = record.end_ms(world.clock.now())
    return {
        "Tag": tag,
        "Digest": digest,
        "ImageId": builds.image_digest_of(digest),
        "Status": "NORMAL",
        "ImageSize": 1789 + int(digest[:4], 16),
        "ImageCreate": pushed_ms,
        "ImageUpdate": pushed_ms,
    }


@service.action("GetRepoBuildRecord")
def get_repo_build_record(world: World, req: RpcRequest) -> dict[str, Any]:
    record = world.cr.record(req.require("InstanceId"), req.require("BuildRecordId"))
    now = world.clock.now()
    return {
        "BuildRecordId": record.build_record_id,
        "Status": world.cr.status(record),
        "StartTime": record.start_ms,
        "EndTime": record.end_ms(now),
        "Image": _image(record),
    }


@service.action("GetRepoBuildRecordStatus")
def get_repo_build_record_status(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id = req.require("InstanceId"), req.require("RepoId")
    record = world.cr.record(instance_id, req.require("BuildRecordId"), repo_id)
    return {"BuildStatus": world.cr.status(record)}


@service.action("ListRepoBuildRecord")
def list_repo_build_record(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, repo_id = req.require("InstanceId"), req.require("RepoId")
    records = world.cr.list_records(instance_id, repo_id)
    page, page_no, page_size = _page(records, req)
    now = world.clock.now()
    return {
        "PageNo": page_no,
        "PageSize": page_size,
        "TotalCount": str(len(records)),
        "BuildRecords": [
            {
                "BuildRecordId": r.build_record_id,
                "BuildStatus": world.cr.status(r),
                "StartTime": str(r.start_ms),
                "EndTime": str(r.end_ms(now)),
                "Image": {"RepoId": r.repo_id, **_image(r)},
            }
            for r in page
        ],
    }


@service.action("ListRepoBuildRecordLog")
def list_repo_build_record_log(world: World, req: RpcRequest) -> dict[str, Any]:
    instance_id, record_id = req.require("InstanceId"), req.require("BuildRecordId")
    record = world.cr.record(instance_id, record_id, req.get("RepoId"))
    lines = record.visible_logs(world.clock.now())
    max_size = world.cr.log_page_size
    page_size = min(max(1, req.get_int("PageSize", max_size) or max_size), max_size)
    offset = req.get_int("Offset")
    if offset is None:
        start = (max(1, req.get_int("PageNo", 1) or 1) - 1) * page_size
    elif offset < 0:
        raise InvalidParameter("Offset", "It must not be negative.")
    else:
        start = offset
    page = lines[start : start + page_size]
    return {
        "PageNo": start // page_size + 1,
        "PageSize": page_size,
        "TotalCount": str(len(lines)),
        "BuildRecordLogs": [
            {"LineNumber": start + i + 1, "BuildStage": line.stage, "Message": line.message}
            for i, line in enumerate(page)
        ],
    }


@service.action("CancelRepoBuildRecord", writes=True)
def cancel_repo_build_record(world: World, req: RpcRequest) -> dict[str, Any]:
    world.cr.cancel_build(req.require("InstanceId"), req.require("RepoId"), req.require("BuildRecordId"))
    return {}
