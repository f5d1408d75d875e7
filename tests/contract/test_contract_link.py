"""Contract: stage link (tasks.link.ensure_security_group) against ECS's documented answers.

Actions: DescribeSecurityGroups, CreateSecurityGroup, DescribeSecurityGroupAttribute,
ModifySecurityGroupPolicy, AuthorizeSecurityGroupEgress, RevokeSecurityGroupEgress,
RevokeSecurityGroup. A fatal ECS code becomes a PipelineError with that code; a transient one
(Throttling.User) is re-raised unchanged for the task's retries.
"""

from __future__ import annotations

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException

from acrvpc.cloud.errors import PipelineError, is_retryable
from tasks.link import ensure_security_group
from tests.contract.support import case, cassette

DOCUMENTED_GROUP = "sg-bp67acfmxazb4p****"  # DescribeSecurityGroups example
CREATED_GROUP = "sg-bp1acr0build0000****"  # CreateSecurityGroup example
MAVEN = "Accept TCP 8081/8081 to 192.168.1.30/32 (priority 1)"


class TestEnsureSecurityGroup:
    @cassette("stages/link/existing.success.yaml")
    def test_documented_group_gets_drop_policy_and_missing_rule(self, clients, contract_spec):
        # given the documented tagged group whose documented rules are GitLab:80 and drop-all, policy Accept
        # when
        outcome = ensure_security_group(clients.ecs, contract_spec)
        # then: the two documented rules are recognised as the spec's, only the Maven rule is added
        assert outcome.security_group_id == DOCUMENTED_GROUP
        assert outcome.changes == [
            f"ModifySecurityGroupPolicy {DOCUMENTED_GROUP} InnerAccessPolicy=Drop",
            f"AuthorizeSecurityGroupEgress {DOCUMENTED_GROUP} {MAVEN}",
        ]

    @cassette("stages/link/create.success.yaml")
    def test_group_is_created_when_none_is_tagged(self, clients, contract_spec):
        # given no tagged group, then the documented CreateSecurityGroup answer
        # when
        outcome = ensure_security_group(clients.ecs, contract_spec)
        # then
        assert outcome.security_group_id == CREATED_GROUP
        assert outcome.changes[0] == f"CreateSecurityGroup {CREATED_GROUP}"
        assert outcome.resources == {"security_group": CREATED_GROUP}

    @cassette("stages/link/converged.success.yaml")
    def test_converged_group_costs_two_reads(self, clients, contract_spec):
        # given the documented group with policy Drop and exactly the spec's three egress rules
        # when
        outcome = ensure_security_group(clients.ecs, contract_spec)
        # then
        assert outcome.changes == []

    @cassette("stages/link/drift.success.yaml")
    def test_rules_not_in_the_spec_are_revoked_by_id(self, clients, contract_spec):
        # given an extra egress rule and an inbound Accept rule next to the spec's rules
        # when
        outcome = ensure_security_group(clients.ecs, contract_spec)
        # then
        assert outcome.changes == [
            f"RevokeSecurityGroupEgress {DOCUMENTED_GROUP} sgr-bp1extra0egress0**** (not in the spec)",
            f"RevokeSecurityGroup {DOCUMENTED_GROUP} sgr-bp1extra0ingress**** (inbound Accept: builders need none)",
        ]

    @pytest.mark.parametrize(
        "code",
        [
            case("stages/link/DescribeSecurityGroups.Forbidden.RAM.yaml", "Forbidden.RAM"),
            case("stages/link/CreateSecurityGroup.InvalidParameter.yaml", "InvalidParameter"),
            case("stages/link/ModifySecurityGroupPolicy.Forbidden.RAM.yaml", "Forbidden.RAM"),
            case("stages/link/AuthorizeSecurityGroupEgress.InvalidParameter.yaml", "InvalidParameter"),
            case("stages/link/RevokeSecurityGroupEgress.Forbidden.RAM.yaml", "Forbidden.RAM"),
        ],
    )
    def test_fatal_code_becomes_pipeline_error(self, code, clients, contract_spec):
        # given an ECS error answer in the documented error shape
        # when
        with pytest.raises(PipelineError) as caught:
            ensure_security_group(clients.ecs, contract_spec)
        # then
        assert caught.value.code == code
        assert not caught.value.retryable
        assert caught.value.fix

    @pytest.mark.parametrize(
        "action",
        [
            case("stages/link/DescribeSecurityGroupAttribute.Throttling.User.yaml", "DescribeSecurityGroupAttribute"),
            case("stages/link/RevokeSecurityGroup.Throttling.User.yaml", "RevokeSecurityGroup"),
        ],
    )
    def test_throttling_is_reraised_for_retry(self, action, clients, contract_spec):
        # given Throttling.User (HTTP 400, no x-acs-retry-after)
        # when
        with pytest.raises(ClientException) as caught:
            ensure_security_group(clients.ecs, contract_spec)
        # then
        assert caught.value.code == "Throttling.User"
        assert is_retryable(caught.value)
