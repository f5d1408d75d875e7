"""Call-level retries: only calls that are safe to repeat, only transient failures."""

from __future__ import annotations

import pytest
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

from acrvpc import callretry, cloud


class TestSafeToRepeat:
    @pytest.mark.parametrize("action", ["DescribeNetworkInterfaces", "GetRepository", "ListRepoBuildRule",
                                        "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupEgress",
                                        "DeleteSecurityGroup", "ModifySecurityGroupPolicy", "UpdateRepoSourceCodeRepo",
                                        "CreateNamespace", "CreateRepository", "CreateRepoSourceCodeRepo",
                                        "CreateNetworkInterfacePermission"])
    def test_reads_and_idempotent_writes(self, action):
        assert callretry.safe_to_repeat(action, {})

    @pytest.mark.parametrize("action", ["CreateBuildRecordByRule", "CreateRepoBuildRule", "CreateSecurityGroup",
                                        "CreateNetworkInterface"])
    def test_writes_that_could_happen_twice(self, action):
        assert not callretry.safe_to_repeat(action, {})

    def test_a_client_token_makes_a_create_safe(self):
        assert callretry.safe_to_repeat("CreateSecurityGroup", {"ClientToken": "acrvpc-x"})

    def test_bad_setting_names_the_variable(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "many")
        with pytest.raises(ValueError, match="ACRVPC_CALL_RETRIES"):
            callretry.attempts_after_first()


class TestAgainstTheSandbox:
    @pytest.fixture
    def cr(self, sandbox, spec, monkeypatch):
        monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
        return cloud.cr_client(spec.region, cloud.resolve_access_key(None))

    def test_transient_failures_of_a_read_are_retried_in_place(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("GetInstance", count=2, code="ServiceUnavailable")
        body = cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)).body
        assert body.instance_status == "RUNNING"
        assert [c["code"] for c in sandbox.world.calls.list()] == ["ServiceUnavailable", "ServiceUnavailable", ""]

    def test_gives_up_after_the_configured_attempts(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("GetInstance", count=10, code="ServiceUnavailable")
        with pytest.raises(ServerException):
            cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert len(sandbox.world.calls.list()) == 4

    def test_fatal_errors_are_not_retried(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("GetInstance", count=2, code="Forbidden.RAM")
        with pytest.raises(ClientException):
            cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert len(sandbox.world.calls.list()) == 1

    def test_starting_a_build_is_never_repeated(self, sandbox, spec, cr):
        sandbox.world.faults.fail_next("CreateBuildRecordByRule", count=1, code="ServiceUnavailable")
        with pytest.raises(ServerException):
            cr.create_build_record_by_rule(cr_models.CreateBuildRecordByRuleRequest(
                instance_id=spec.instance_id, repo_id="crr-x", build_rule_id="crbr-x"))
        assert len(sandbox.world.calls.list()) == 1
