"""Contract: stage preflight (tasks.preflight.observe / run_preflight) against documented answers.

Reads: CR GetInstance, GetRepository, GetRepoSourceCodeRepo; VPC DescribeVpcAttribute,
DescribeVSwitchAttributes, DescribeVirtualBorderRouters, DescribeRouteEntryList; ECS
DescribeInstances, DescribeSecurityGroupAttribute; GitLab GET /user, /personal_access_tokens/self,
/projects/:id. A failing read never aborts the others: it becomes a failed check naming its code.
"""

from __future__ import annotations

from typing import Any

import pytest

from acrvpc.cloud.errors import error_code, is_retryable
from acrvpc.domain.spec import GitLabAccess
from tasks.preflight import CHECK_IDS, evaluate, observe, run_preflight
from tests.contract.support import case, cassette


@pytest.fixture(autouse=True)
def _one_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run observe()'s reads one at a time: vcrpy swaps urllib3's connection classes back to the real
    ones for a moment whenever it builds a connection (``force_reset``), so a concurrent thread could
    open a real connection. One worker also makes the call order that of the cassette."""
    monkeypatch.setattr("tasks.preflight._MAX_WORKERS", 1)


def _checks(outcome: Any) -> dict[str, Any]:
    return {c.id: c for c in outcome.checks}


def _datacenter(spec: Any) -> Any:
    """The contract spec with GitLab in a data center behind the documented VBR."""
    network = spec.network.model_copy(update={"vbr_id": "vbr-bp1lhl0taikrte****", "datacenter_cidrs": ["10.20.0.0/16"]})
    gitlab = spec.gitlab.model_copy(update={"access": GitLabAccess.DATACENTER, "private_ip": "10.20.1.5"})
    return spec.model_copy(update={"network": network, "gitlab": gitlab})


class TestRunPreflight:
    @pytest.mark.recordable
    @cassette("stages/preflight/ecs.success.yaml")
    def test_every_check_is_evaluated(self, clients, gitlab_client, contract_spec):
        # given the answers of every read (documented; or a real account's when recording)
        # when
        outcome = run_preflight(clients, contract_spec, gitlab=gitlab_client)
        # then
        checks = _checks(outcome)
        assert list(checks) == list(CHECK_IDS)
        assert checks["instance.exists"].result == "pass"
        assert outcome.resources["instance"] == contract_spec.instance_id

    @cassette("stages/preflight/ecs.success.yaml")
    def test_documented_answers_pass_every_check(self, clients, gitlab_client, contract_spec):
        # given the documented answers of every read (GitLab on ECS)
        # when
        outcome = run_preflight(clients, contract_spec, gitlab=gitlab_client)
        # then
        assert outcome.passed, [(c.id, c.detail) for c in outcome.failures]
        assert _checks(outcome)["gitlab.token"].result == "pass"

    @cassette("stages/preflight/ecs.success.yaml")
    def test_documented_values_reach_the_checks(self, clients, gitlab_client, contract_spec):
        # given the documented answers
        # when
        checks = _checks(run_preflight(clients, contract_spec, gitlab=gitlab_client))
        # then: values from the examples, parsed through the SDK models
        assert "acr-build-prod" in checks["instance.exists"].detail
        assert "Enterprise_Standard" in checks["instance.edition"].detail
        assert "build-vpc" in checks["vpc.exists"].detail
        assert "250 free IP" in checks["vswitch.free_ips"].detail
        assert "cn-hangzhou-h" in checks["zone.vpc_mode"].detail
        assert "i-bp67acfmxazb4ph****" in checks["gitlab.sg_ingress"].detail
        assert "sg-bp1gitlab000000****" in checks["gitlab.sg_ingress"].detail
        assert "bound, OverseaBuild=false" in checks["build.oversea_off"].detail
        assert "john_smith" in checks["gitlab.token"].detail
        assert "platform/billing-api (id 3)" in checks["gitlab.projects"].detail

    @cassette("stages/preflight/datacenter.success.yaml")
    def test_datacenter_route_is_read_from_the_vbr_table(self, clients, contract_spec):
        # given GitLab in a data center behind the documented VBR and its documented route entry
        spec = _datacenter(contract_spec)
        # when
        checks = _checks(run_preflight(clients, spec))
        # then
        vbr = checks["vbr.return_route"]
        assert vbr.result == "pass", vbr.detail
        assert "rte-bp1mnnr2al0naomnp****" in vbr.detail and "RouterInterface" in vbr.detail
        assert checks["gitlab.sg_ingress"].result == "skip"


class TestObserveErrors:
    @pytest.mark.parametrize(
        "read, code, check, retryable",
        [
            case(
                "stages/preflight/GetInstance.Forbidden.RAM.yaml", "instance", "Forbidden.RAM", "instance.exists", False
            ),
            case(
                "stages/preflight/GetInstance.INSTANCE_NOT_EXIST.yaml",
                "instance",
                "INSTANCE_NOT_EXIST",
                "instance.exists",
                False,
            ),
            case(
                "stages/preflight/DescribeVpcAttribute.Throttling.User.yaml",
                "vpc",
                "Throttling.User",
                "vpc.exists",
                True,
            ),
            case(
                "stages/preflight/DescribeVSwitchAttributes.InvalidParameter.yaml",
                "vswitch",
                "InvalidParameter",
                "vswitch.exists",
                False,
            ),
            case(
                "stages/preflight/DescribeInstances.Forbidden.RAM.yaml",
                "gitlab_host",
                "Forbidden.RAM",
                "gitlab.sg_ingress",
                False,
            ),
            case(
                "stages/preflight/DescribeSecurityGroupAttribute.Throttling.User.yaml",
                "gitlab_host",
                "Throttling.User",
                "gitlab.sg_ingress",
                True,
            ),
            case("stages/preflight/gitlab.401.yaml", "gitlab", "GITLAB_TOKEN_INVALID", "gitlab.token", False),
        ],
    )
    def test_failed_read_becomes_a_failed_check_with_its_code(
        self, read, code, check, retryable, clients, gitlab_client, contract_spec
    ):
        # given one documented read answering an error, the others their documented success
        # when
        obs = observe(clients, contract_spec, gitlab=gitlab_client)
        outcome = evaluate(contract_spec, obs)
        # then
        failed = getattr(obs, read)
        assert error_code(failed.error) == code
        assert is_retryable(failed.error) is retryable
        assert _checks(outcome)[check].result == "fail"
        assert code in _checks(outcome)[check].detail
        assert (check in obs.transient_check_ids()) is retryable

    @cassette("stages/preflight/GetRepository.REPO_NOT_EXIST.yaml")
    def test_missing_repository_is_planned_not_failed(self, clients, gitlab_client, contract_spec):
        # given CR answering IsSuccess=false REPO_NOT_EXIST for the repository
        # when
        checks = _checks(run_preflight(clients, contract_spec, gitlab=gitlab_client))
        # then
        assert checks["build.oversea_off"].result == "pass"
        assert "will be created" in checks["build.oversea_off"].detail

    @cassette("stages/preflight/GetRepoSourceCodeRepo.Forbidden.RAM.yaml")
    def test_forbidden_binding_read_fails_oversea_check(self, clients, gitlab_client, contract_spec):
        # given GetRepoSourceCodeRepo refused by RAM
        # when
        obs = observe(clients, contract_spec, gitlab=gitlab_client)
        # then
        assert error_code(obs.repositories["apps/billing-api"].error) == "Forbidden.RAM"
        assert _checks(evaluate(contract_spec, obs))["build.oversea_off"].result == "fail"

    @pytest.mark.parametrize(
        "code, retryable",
        [
            case("stages/preflight/DescribeVirtualBorderRouters.Forbidden.RAM.yaml", "Forbidden.RAM", False),
            case("stages/preflight/DescribeVirtualBorderRouters.ServiceUnavailable.yaml", "ServiceUnavailable", True),
            case("stages/preflight/DescribeRouteEntryList.InvalidParameter.yaml", "InvalidParameter", False),
        ],
    )
    def test_vbr_read_error_fails_return_route_check(self, code, retryable, clients, contract_spec):
        # given GitLab in a data center and one VBR read answering an error
        spec = _datacenter(contract_spec)
        # when
        obs = observe(clients, spec)
        # then
        assert error_code(obs.vbr.error) == code
        assert is_retryable(obs.vbr.error) is retryable
        assert _checks(evaluate(spec, obs))["vbr.return_route"].result == "fail"
