"""The sandbox's Container Registry 2018-12-01 emulation, through the real SDK client.

Shapes and type quirks are asserted on the SDK's parsed models (a key the model does not know is
dropped by the client), soft errors on ``IsSuccess``/``Code``, and builds by moving the sandbox
clock (frozen here, so states are deterministic).
"""

from __future__ import annotations

import re

import pytest
from alibabacloud_cr20181201 import models as m
from alibabacloud_tea_openapi import utils_models as open_api_util_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils
from darabonba.runtime import RuntimeOptions

from acrvpc.cloud import clients as cloud

INSTANCE = "cri-sandbox0demo0001"
BUILD_ACCOUNT = 1654218965343050
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def world(sandbox):
    """The sandbox world with its clock frozen (tests move it with ``advance``)."""
    sandbox.world.clock.set_scale(0)
    return sandbox.world


@pytest.fixture
def cr(sandbox):
    return cloud.cr_client("cn-hangzhou", cloud.resolve_access_key(None))


@pytest.fixture
def reachable(world, monkeypatch):
    """The build network reaches GitLab (the ECS side's seam, not our code)."""
    calls = []

    def reaches(account_id, ip, port):
        calls.append((account_id, ip, port))
        return True, ""

    monkeypatch.setattr(world.ecs, "reaches", reaches)
    return calls


def make_repo(cr, namespace="apps", name="billing-api", project=("platform", "billing-api"), bind=True) -> str:
    if cr.get_namespace(m.GetNamespaceRequest(instance_id=INSTANCE, namespace_name=namespace)).body.is_success is False:
        cr.create_namespace(m.CreateNamespaceRequest(instance_id=INSTANCE, namespace_name=namespace))
    body = cr.create_repository(
        m.CreateRepositoryRequest(
            instance_id=INSTANCE, repo_namespace_name=namespace, repo_name=name, repo_type="PRIVATE", summary="s"
        )
    ).body
    assert body.is_success, body.code
    if bind:
        bound = cr.create_repo_source_code_repo(
            m.CreateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=body.repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name=project[0],
                code_repo_name=project[1],
                auto_build=False,
                oversea_build=False,
                disable_cache_build=False,
            )
        ).body
        assert bound.is_success, bound.code
    return body.repo_id


def make_rule(cr, repo_id, **kw) -> str:
    args = {"push_type": "GIT_BRANCH", "push_name": "main", "image_tag": "latest", **kw}
    body = cr.create_repo_build_rule(m.CreateRepoBuildRuleRequest(instance_id=INSTANCE, repo_id=repo_id, **args)).body
    assert body.is_success, body.code
    return body.build_rule_id


def start(cr, repo_id, rule_id) -> str:
    body = cr.create_build_record_by_rule(
        m.CreateBuildRecordByRuleRequest(instance_id=INSTANCE, repo_id=repo_id, build_rule_id=rule_id)
    ).body
    assert body.is_success, body.code
    return body.build_record_id


def status(cr, repo_id, record_id) -> str:
    return cr.get_repo_build_record_status(
        m.GetRepoBuildRecordStatusRequest(instance_id=INSTANCE, repo_id=repo_id, build_record_id=record_id)
    ).body.build_status


def logs(cr, repo_id, record_id, offset=None):
    return cr.list_repo_build_record_log(
        m.ListRepoBuildRecordLogRequest(instance_id=INSTANCE, repo_id=repo_id, build_record_id=record_id, offset=offset)
    ).body


class TestGetInstance:
    def test_shape_and_int_create_time(self, cr):
        body = cr.get_instance(m.GetInstanceRequest(instance_id=INSTANCE)).body
        assert body.is_success is True and body.code == "success"
        assert body.instance_status == "RUNNING"
        assert body.instance_specification == "Enterprise_Standard"
        assert isinstance(body.create_time, int) and isinstance(body.modified_time, int)

    def test_unknown_instance_is_a_soft_error(self, cr):
        body = cr.get_instance(m.GetInstanceRequest(instance_id="cri-nope")).body
        assert body.is_success is False
        assert body.code == "INSTANCE_NOT_EXIST"

    def test_missing_instance_id_is_http_400(self, cr):
        with pytest.raises(ClientException) as err:
            cr.get_instance(m.GetInstanceRequest())
        assert err.value.code == "MissingParameter"
        assert err.value.status_code == 400


class TestListInstance:
    def test_int_total_count_and_string_times(self, cr):
        body = cr.list_instance(m.ListInstanceRequest()).body
        assert body.total_count == 1 and isinstance(body.total_count, int)
        inst = body.instances[0]
        assert inst.instance_id == INSTANCE and inst.region_id == "cn-hangzhou"
        assert isinstance(inst.create_time, str)

    def test_status_filter(self, cr):
        body = cr.list_instance(m.ListInstanceRequest(instance_status="STOPPED")).body
        assert body.total_count == 0 and body.instances == []


class TestNamespaces:
    def test_get_missing_namespace(self, cr):
        body = cr.get_namespace(m.GetNamespaceRequest(instance_id=INSTANCE, namespace_name="apps")).body
        assert body.is_success is False and body.code == "NAMESPACE_NOT_EXIST"

    def test_create_then_get_and_list(self, cr):
        created = cr.create_namespace(m.CreateNamespaceRequest(instance_id=INSTANCE, namespace_name="apps")).body
        assert created.is_success is True
        got = cr.get_namespace(m.GetNamespaceRequest(instance_id=INSTANCE, namespace_name="apps")).body
        assert got.namespace_name == "apps" and got.namespace_status == "NORMAL"
        assert got.namespace_id.startswith("crn-") and got.auto_create_repo is False
        listed = cr.list_namespace(m.ListNamespaceRequest(instance_id=INSTANCE)).body
        assert listed.total_count == "1"
        assert [n.namespace_name for n in listed.namespaces] == ["apps"]

    def test_create_twice_is_already_exist(self, cr):
        cr.create_namespace(m.CreateNamespaceRequest(instance_id=INSTANCE, namespace_name="apps"))
        again = cr.create_namespace(m.CreateNamespaceRequest(instance_id=INSTANCE, namespace_name="apps")).body
        assert again.is_success is False and again.code == "NAMESPACE_ALREADY_EXIST"

    def test_write_on_stopped_instance(self, cr, world):
        world.cr.instances[INSTANCE].status = "STOPPED"
        body = cr.create_namespace(m.CreateNamespaceRequest(instance_id=INSTANCE, namespace_name="apps")).body
        assert body.code == "INSTANCE_STATUS_NOT_SUPPORT"


class TestRepositories:
    def test_create_needs_the_namespace(self, cr):
        body = cr.create_repository(
            m.CreateRepositoryRequest(
                instance_id=INSTANCE, repo_namespace_name="apps", repo_name="x", repo_type="PRIVATE", summary="s"
            )
        ).body
        assert body.is_success is False and body.code == "NAMESPACE_NOT_EXIST"

    def test_get_by_id_and_by_name(self, cr):
        repo_id = make_repo(cr, bind=False)
        by_id = cr.get_repository(m.GetRepositoryRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        by_name = cr.get_repository(
            m.GetRepositoryRequest(instance_id=INSTANCE, repo_namespace_name="apps", repo_name="billing-api")
        ).body
        assert by_id.repo_id == by_name.repo_id == repo_id
        assert by_id.repo_type == "PRIVATE" and by_id.repo_build_type == "MANUAL"
        assert isinstance(by_id.create_time, int) and by_id.tag_immutability is False

    def test_missing_repository(self, cr):
        body = cr.get_repository(
            m.GetRepositoryRequest(instance_id=INSTANCE, repo_namespace_name="apps", repo_name="nope")
        ).body
        assert body.is_success is False and body.code == "REPO_NOT_EXIST"

    def test_duplicate(self, cr):
        make_repo(cr, bind=False)
        body = cr.create_repository(
            m.CreateRepositoryRequest(
                instance_id=INSTANCE,
                repo_namespace_name="apps",
                repo_name="billing-api",
                repo_type="PRIVATE",
                summary="s",
            )
        ).body
        assert body.code == "REPO_ALREADY_EXIST"

    def test_list_string_total_count_and_paging(self, cr):
        make_repo(cr, name="a", bind=False)
        make_repo(cr, name="b", bind=False)
        page = cr.list_repository(m.ListRepositoryRequest(instance_id=INSTANCE, page_no=2, page_size=1)).body
        assert page.total_count == "2" and page.page_no == 2
        assert [r.repo_name for r in page.repositories] == ["b"]


class TestCreateRepoSourceCodeRepo:
    def test_without_bound_gitlab_account(self, cr, world):
        world.cr.unbind_code_source(INSTANCE, "GITLAB")
        repo_id = make_repo(cr, bind=False)
        body = cr.create_repo_source_code_repo(
            m.CreateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name="platform",
                code_repo_name="billing-api",
                auto_build=False,
                oversea_build=False,
                disable_cache_build=False,
            )
        ).body
        assert body.is_success is False and body.code == "SOURCE_CODE_ACCOUNT_NOT_EXIST"

    def test_unknown_gitlab_project(self, cr):
        repo_id = make_repo(cr, bind=False)
        body = cr.create_repo_source_code_repo(
            m.CreateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name="platform",
                code_repo_name="nope",
                oversea_build=False,
            )
        ).body
        assert body.code == "CODE_REPO_NOT_EXIST"

    def test_bound_twice(self, cr):
        repo_id = make_repo(cr)
        body = cr.create_repo_source_code_repo(
            m.CreateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name="platform",
                code_repo_name="billing-api",
            )
        ).body
        assert body.code == "REPO_SOURCE_CODE_ALREADY_EXIST"

    def test_booleans_arrive_capitalised_and_are_parsed(self, cr, sandbox):
        repo_id = make_repo(cr, bind=False)
        cr.create_repo_source_code_repo(
            m.CreateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name="platform",
                code_repo_name="billing-api",
                auto_build=True,
                oversea_build=False,
                disable_cache_build=True,
            )
        )
        call = [c for c in sandbox.world.calls.list() if c["action"] == "CreateRepoSourceCodeRepo"][-1]
        assert call["params"]["AutoBuild"] == "True" and call["params"]["OverseaBuild"] == "False"
        got = cr.get_repo_source_code_repo(m.GetRepoSourceCodeRepoRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert (got.auto_build, got.oversea_build, got.disable_cache_build) == ("true", "false", "true")


class TestGetRepoSourceCodeRepo:
    def test_string_flags_and_domain(self, cr):
        repo_id = make_repo(cr)
        body = cr.get_repo_source_code_repo(m.GetRepoSourceCodeRepoRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert body.code_repo_type == "GITLAB" and body.code_repo_domain == "http://192.168.1.20"
        assert (body.code_repo_namespace_name, body.code_repo_name) == ("platform", "billing-api")
        assert body.auto_build == "false" and isinstance(body.oversea_build, str)

    def test_unbound_repository(self, cr):
        repo_id = make_repo(cr, bind=False)
        body = cr.get_repo_source_code_repo(m.GetRepoSourceCodeRepoRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert body.is_success is False and body.code == "REPO_SOURCE_CODE_NOT_EXIST"

    def test_domain_follows_the_console_binding(self, cr, world):
        repo_id = make_repo(cr)
        world.cr.bind_code_source(INSTANCE, "GITLAB", "https://gitlab.corp.example:8443/", "release-bot")
        body = cr.get_repo_source_code_repo(m.GetRepoSourceCodeRepoRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert body.code_repo_domain == "https://gitlab.corp.example:8443"


class TestUpdateRepoSourceCodeRepo:
    def test_string_booleans(self, cr):
        repo_id = make_repo(cr)
        body = cr.update_repo_source_code_repo(
            m.UpdateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name="platform",
                code_repo_name="web-frontend",
                auto_build="true",
                oversea_build="true",
            )
        ).body
        assert body.is_success is True
        got = cr.get_repo_source_code_repo(m.GetRepoSourceCodeRepoRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert (got.code_repo_name, got.auto_build, got.oversea_build, got.disable_cache_build) == (
            "web-frontend",
            "true",
            "true",
            "false",
        )

    def test_unbound_repository(self, cr):
        repo_id = make_repo(cr, bind=False)
        body = cr.update_repo_source_code_repo(
            m.UpdateRepoSourceCodeRepoRequest(
                instance_id=INSTANCE,
                repo_id=repo_id,
                code_repo_type="GITLAB",
                code_repo_namespace_name="platform",
                code_repo_name="billing-api",
            )
        ).body
        assert body.code == "REPO_SOURCE_CODE_NOT_EXIST"


class TestBuildRules:
    def test_lists_and_string_total_count(self, cr):
        repo_id = make_repo(cr)
        rule_id = make_rule(
            cr,
            repo_id,
            platforms=["linux/amd64", "linux/arm64"],
            build_args=["MAVEN_MIRROR=http://192.168.1.30:8081", "X=1"],
            dockerfile_location="/docker",
        )
        body = cr.list_repo_build_rule(m.ListRepoBuildRuleRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert body.total_count == "1" and rule_id.startswith("crbr-")
        rule = body.build_rules[0]
        assert (rule.build_rule_id, rule.push_type, rule.push_name, rule.image_tag) == (
            rule_id,
            "GIT_BRANCH",
            "main",
            "latest",
        )
        assert rule.platforms == ["linux/amd64", "linux/arm64"]
        assert rule.build_args == ["MAVEN_MIRROR=http://192.168.1.30:8081", "X=1"]
        assert (rule.dockerfile_location, rule.dockerfile_name) == ("/docker", "Dockerfile")

    def test_defaults_and_paging(self, cr):
        repo_id = make_repo(cr)
        ids = [make_rule(cr, repo_id, image_tag=t) for t in ("a", "b", "c")]
        page = cr.list_repo_build_rule(
            m.ListRepoBuildRuleRequest(instance_id=INSTANCE, repo_id=repo_id, page_no=2, page_size=2)
        ).body
        assert page.total_count == "3" and [r.build_rule_id for r in page.build_rules] == ids[2:]
        assert page.build_rules[0].platforms == ["linux/amd64"]

    def test_bad_push_type(self, cr):
        repo_id = make_repo(cr)
        with pytest.raises(ClientException) as err:
            cr.create_repo_build_rule(
                m.CreateRepoBuildRuleRequest(
                    instance_id=INSTANCE, repo_id=repo_id, push_type="GIT_COMMIT", push_name="x", image_tag="y"
                )
            )
        assert err.value.code == "InvalidParameter"


class TestCreateBuildRecordByRule:
    def test_uuid_record_and_pending(self, cr, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        assert UUID_RE.match(record_id)
        assert status(cr, repo_id, record_id) == "PENDING"
        assert reachable == [(BUILD_ACCOUNT, "192.168.1.20", 80)]

    def test_unknown_rule(self, cr):
        repo_id = make_repo(cr)
        body = cr.create_build_record_by_rule(
            m.CreateBuildRecordByRuleRequest(instance_id=INSTANCE, repo_id=repo_id, build_rule_id="crbr-nope")
        ).body
        assert body.code == "BUILD_RULE_NOT_EXIST"

    def test_repository_without_source(self, cr):
        repo_id = make_repo(cr, bind=False)
        body = cr.create_build_record_by_rule(
            m.CreateBuildRecordByRuleRequest(
                instance_id=INSTANCE, repo_id=repo_id, build_rule_id=make_rule(cr, repo_id)
            )
        ).body
        assert body.code == "REPO_SOURCE_CODE_NOT_EXIST"


class TestBuildStateMachine:
    def test_pending_building_success(self, cr, world, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        assert status(cr, repo_id, record_id) == "PENDING"
        world.clock.advance(2)
        assert status(cr, repo_id, record_id) == "BUILDING"
        running = cr.get_repo_build_record(
            m.GetRepoBuildRecordRequest(instance_id=INSTANCE, build_record_id=record_id)
        ).body
        assert running.status == "BUILDING" and running.end_time == 0
        world.clock.advance(17)
        done = cr.get_repo_build_record(
            m.GetRepoBuildRecordRequest(instance_id=INSTANCE, build_record_id=record_id)
        ).body
        assert done.status == "SUCCESS" and status(cr, repo_id, record_id) == "SUCCESS"
        assert isinstance(done.start_time, int) and done.end_time - done.start_time == 19_000
        assert (done.image.repo_namespace_name, done.image.repo_name, done.image.image_tag) == (
            "apps",
            "billing-api",
            "latest",
        )

    def test_list_records_have_string_times(self, cr, world, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(60)
        body = cr.list_repo_build_record(m.ListRepoBuildRecordRequest(instance_id=INSTANCE, repo_id=repo_id)).body
        assert body.total_count == "1"
        rec = body.build_records[0]
        assert rec.build_record_id == record_id and rec.build_status == "SUCCESS"
        assert isinstance(rec.start_time, str) and int(rec.end_time) - int(rec.start_time) == 19_000
        assert rec.image.repo_id == repo_id

    def test_unknown_record(self, cr):
        repo_id = make_repo(cr)
        body = cr.get_repo_build_record_status(
            m.GetRepoBuildRecordStatusRequest(
                instance_id=INSTANCE, repo_id=repo_id, build_record_id="0bf2a2c7-1bd0-4ba6-ae0c-8c4b3f9c0000"
            )
        ).body
        assert body.is_success is False and body.code == "BUILD_RECORD_NOT_EXIST"


class TestListRepoBuildRecordLog:
    def test_lines_grow_with_time_and_cover_every_stage(self, cr, world, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        assert logs(cr, repo_id, record_id).total_count == "0"
        world.clock.advance(2)
        early = logs(cr, repo_id, record_id)
        assert 0 < int(early.total_count) < 10
        assert early.build_record_logs[0].line_number == 1
        assert early.build_record_logs[0].build_stage == "GIT_CLONE"
        world.clock.advance(30)
        full = logs(cr, repo_id, record_id)
        lines = full.build_record_logs
        assert [line.line_number for line in lines] == list(range(1, len(lines) + 1))
        assert full.total_count == str(len(lines))
        assert [s for s in dict.fromkeys(line.build_stage for line in lines)] == ["GIT_CLONE", "BUILD", "PUSH"]
        messages = [line.message for line in lines]
        assert "Cloning into '/workspace'..." in messages
        assert any(msg.startswith("Step 1/6 : FROM ") for msg in messages)
        assert any("digest: sha256:" in msg for msg in messages)

    def test_offset_pages(self, cr, world, reachable):
        world.cr.log_page_size = 5
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(60)
        first = logs(cr, repo_id, record_id)
        assert first.page_size == 5 and [x.line_number for x in first.build_record_logs] == [1, 2, 3, 4, 5]
        second = logs(cr, repo_id, record_id, offset=5)
        assert [x.line_number for x in second.build_record_logs] == [6, 7, 8, 9, 10] and second.page_no == 2
        total = int(first.total_count)
        assert logs(cr, repo_id, record_id, offset=total).build_record_logs == []

    def test_page_no_and_page_size(self, cr, world, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(60)
        # PageNo/PageSize are not in the SDK's request model: send them through call_api.
        params = open_api_util_models.Params(
            action="ListRepoBuildRecordLog",
            version="2018-12-01",
            protocol="HTTPS",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        query = {"InstanceId": INSTANCE, "BuildRecordId": record_id, "PageNo": 2, "PageSize": 4}
        raw = cr.call_api(params, open_api_util_models.OpenApiRequest(query=Utils.query(query)), RuntimeOptions())
        body = m.ListRepoBuildRecordLogResponseBody().from_map(raw["body"])
        assert body.page_no == 2 and body.page_size == 4
        assert [x.line_number for x in body.build_record_logs] == [5, 6, 7, 8]


class TestCancelRepoBuildRecord:
    def test_cancel_a_running_build(self, cr, world, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(5)
        before = int(logs(cr, repo_id, record_id).total_count)
        body = cr.cancel_repo_build_record(
            m.CancelRepoBuildRecordRequest(instance_id=INSTANCE, repo_id=repo_id, build_record_id=record_id)
        ).body
        assert body.is_success is True
        world.clock.advance(60)
        assert status(cr, repo_id, record_id) == "CANCELED"
        after = logs(cr, repo_id, record_id).build_record_logs
        assert len(after) == before + 1 and "canceled" in after[-1].message
        record = cr.get_repo_build_record(
            m.GetRepoBuildRecordRequest(instance_id=INSTANCE, build_record_id=record_id)
        ).body
        assert record.end_time - record.start_time == 5_000

    def test_cancel_a_finished_build(self, cr, world, reachable):
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(60)
        body = cr.cancel_repo_build_record(
            m.CancelRepoBuildRecordRequest(instance_id=INSTANCE, repo_id=repo_id, build_record_id=record_id)
        ).body
        assert body.is_success is False and body.code == "BUILD_RECORD_STATUS_NOT_SUPPORT"


class TestBuildFailures:
    def test_fail_repos_fail_at_build(self, cr, world, reachable):
        world.cr.fail_repos.add("apps/billing-api")
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(60)
        assert status(cr, repo_id, record_id) == "FAILED"
        lines = logs(cr, repo_id, record_id).build_record_logs
        assert lines[-1].build_stage == "BUILD"
        assert any("did not complete successfully" in x.message for x in lines)
        assert not any(x.build_stage == "PUSH" for x in lines)

    def test_unreachable_gitlab_fails_at_git_clone(self, cr, world, monkeypatch):
        calls = []

        def reaches(account_id, ip, port):
            calls.append((account_id, ip, port))
            return False, "no InUse ENI for the build service"

        monkeypatch.setattr(world.ecs, "reaches", reaches)
        repo_id = make_repo(cr)
        record_id = start(cr, repo_id, make_rule(cr, repo_id))
        world.clock.advance(60)
        assert status(cr, repo_id, record_id) == "FAILED"
        assert status(cr, repo_id, record_id) == "FAILED"  # decided once, at the start
        assert calls == [(BUILD_ACCOUNT, "192.168.1.20", 80)]
        messages = [x.message for x in logs(cr, repo_id, record_id).build_record_logs]
        assert any("Failed to connect to 192.168.1.20 port 80: Connection timed out" in x for x in messages)
        assert any("no InUse ENI for the build service" in x for x in messages)

    def test_https_domain_defaults_to_port_443(self, cr, world, reachable):
        world.cr.bind_code_source(INSTANCE, "GITLAB", "https://gitlab.corp.example", "release-bot")
        repo_id = make_repo(cr)
        start(cr, repo_id, make_rule(cr, repo_id))
        assert reachable == [(BUILD_ACCOUNT, "gitlab.corp.example", 443)]
