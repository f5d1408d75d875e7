"""Contract: stage binding (tasks.binding.bind_repository) against CR's documented answers.

Actions: GetNamespace, CreateNamespace, GetRepository, CreateRepository, GetRepoSourceCodeRepo,
CreateRepoSourceCodeRepo, UpdateRepoSourceCodeRepo, ListRepoBuildRule, CreateRepoBuildRule. CR's
business failures arrive as HTTP 200 with ``IsSuccess=false``; HTTP errors as SDK exceptions.
"""

from __future__ import annotations

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException

from acrvpc.cloud.errors import CrBusinessError
from tasks.binding import bind_repository
from tests.contract.support import case, cassette

REPO_ID = "crr-gzsrlevmvoaq****"
RULE_ID = "crbr-ly77w5i3t31f****"


class TestBindRepository:
    @cassette("stages/binding/converged.success.yaml")
    def test_documented_binding_is_converged(self, clients, contract_spec):
        # given the documented namespace, repository, source binding (string flags "true"/"false") and rule
        repo = contract_spec.repositories[0]
        # when
        outcome = bind_repository(clients.cr, contract_spec, repo)
        # then: no write, and nothing to note
        assert outcome.changes == []
        assert outcome.full_name == repo.full_name
        assert [r.image_tag for r in outcome.rules] == [r.image_tag for r in repo.build_rules]

    @cassette("stages/binding/converged.success.yaml")
    def test_documented_ids_reach_the_outcome(self, clients, contract_spec):
        # given the documented answers
        # when
        outcome = bind_repository(clients.cr, contract_spec, contract_spec.repositories[0])
        # then
        assert outcome.repo_id == REPO_ID
        assert [r.build_rule_id for r in outcome.rules] == [RULE_ID]
        assert outcome.notes == []

    @cassette("stages/binding/create.success.yaml")
    def test_everything_missing_is_created(self, clients, contract_spec):
        # given NAMESPACE_NOT_EXIST, REPO_NOT_EXIST, an unbound repository and no rule
        # when
        outcome = bind_repository(clients.cr, contract_spec, contract_spec.repositories[0])
        # then
        assert outcome.changes == [
            "CreateNamespace apps",
            f"CreateRepository apps/billing-api {REPO_ID}",
            "CreateRepoSourceCodeRepo apps/billing-api -> platform/billing-api",
            f"CreateRepoBuildRule apps/billing-api GIT_BRANCH:main -> latest {RULE_ID}",
        ]

    @cassette("stages/binding/drift.success.yaml")
    def test_oversea_build_is_turned_off(self, clients, contract_spec):
        # given the documented binding with OverseaBuild "true"
        # when
        outcome = bind_repository(clients.cr, contract_spec, contract_spec.repositories[0])
        # then
        assert outcome.changes == ["UpdateRepoSourceCodeRepo apps/billing-api (OverseaBuild true != false)"]

    @pytest.mark.parametrize(
        "code",
        [
            case("stages/binding/GetNamespace.INSTANCE_NOT_EXIST.yaml", "INSTANCE_NOT_EXIST"),
            case("stages/binding/CreateNamespace.INSTANCE_STATUS_NOT_SUPPORT.yaml", "INSTANCE_STATUS_NOT_SUPPORT"),
            case(
                "stages/binding/CreateRepoSourceCodeRepo.INSTANCE_STATUS_NOT_SUPPORT.yaml",
                "INSTANCE_STATUS_NOT_SUPPORT",
            ),
            case("stages/binding/ListRepoBuildRule.REPO_NOT_EXIST.yaml", "REPO_NOT_EXIST"),
        ],
    )
    def test_is_success_false_raises_cr_business_error(self, code, clients, contract_spec):
        # given CR's HTTP 200 with IsSuccess=false and a code
        # when
        with pytest.raises(CrBusinessError) as caught:
            bind_repository(clients.cr, contract_spec, contract_spec.repositories[0])
        # then
        assert caught.value.code == code

    @pytest.mark.parametrize(
        "code",
        [
            case("stages/binding/GetRepository.Throttling.User.yaml", "Throttling.User"),
            case("stages/binding/CreateRepository.InvalidParameter.yaml", "InvalidParameter"),
            case("stages/binding/GetRepoSourceCodeRepo.Forbidden.RAM.yaml", "Forbidden.RAM"),
            case("stages/binding/UpdateRepoSourceCodeRepo.Forbidden.RAM.yaml", "Forbidden.RAM"),
            case("stages/binding/CreateRepoBuildRule.InvalidParameter.yaml", "InvalidParameter"),
        ],
    )
    def test_http_error_surfaces_with_its_code(self, code, clients, contract_spec):
        # given an HTTP error answer in the documented error shape
        # when
        with pytest.raises(ClientException) as caught:
            bind_repository(clients.cr, contract_spec, contract_spec.repositories[0])
        # then
        assert caught.value.code == code
