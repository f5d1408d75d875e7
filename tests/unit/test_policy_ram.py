"""The sandbox's RAM evaluator (acrvpc/sandbox/core/ram.py): policy grammar, decisions, request targets."""

from __future__ import annotations

import pytest

from acrvpc.sandbox.core.ram import CrNoPrivilege, PolicyError, RamDenied, RamPolicy, authorize, request_target
from acrvpc.sandbox.world import World

SG = "acs:ecs:cn-hangzhou:5123456789012345:securitygroup/sg-1"


def policy(*statements):
    return RamPolicy({"Version": "1", "Statement": list(statements)})


def allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


class TestDecide:
    def test_no_matching_statement_is_an_implicit_deny(self):
        assert policy(allow("ecs:DescribeSecurityGroups")).decide("ecs:DeleteSecurityGroup", SG) == "ImplicitDeny"

    def test_a_matching_allow_allows(self):
        assert policy(allow("ecs:DeleteSecurityGroup", SG)).decide("ecs:DeleteSecurityGroup", SG) == "Allow"

    def test_deny_wins_over_allow(self):
        p = policy(allow("ecs:*"), {"Effect": "Deny", "Action": "ecs:Delete*", "Resource": SG})
        assert p.decide("ecs:DeleteSecurityGroup", SG) == "ExplicitDeny"
        assert p.decide("ecs:DescribeSecurityGroups", SG) == "Allow"

    def test_wildcards_in_action_and_resource(self):
        p = policy(allow("ecs:Describe*", "acs:ecs:cn-hangzhou:*:securitygroup/*"))
        assert p.decide("ecs:DescribeSecurityGroupAttribute", SG) == "Allow"
        assert p.decide("ecs:DescribeSecurityGroupAttribute", SG.replace("cn-hangzhou", "cn-beijing")) == "ImplicitDeny"
        assert (
            p.decide("ecs:DescribeSecurityGroupAttribute", SG.replace("securitygroup", "networkinterface"))
            == "ImplicitDeny"
        )

    def test_actions_match_case_insensitively_resources_do_not(self):
        p = policy(allow("ECS:deletesecuritygroup", SG))
        assert p.decide("ecs:DeleteSecurityGroup", SG) == "Allow"
        assert p.decide("ecs:DeleteSecurityGroup", SG.upper()) == "ImplicitDeny"

    def test_a_literal_star_resource_needs_a_star_grant(self):
        create = "acs:ecs:cn-hangzhou:5123456789012345:securitygroup/*"
        assert policy(allow("ecs:CreateSecurityGroup", SG)).decide("ecs:CreateSecurityGroup", create) == "ImplicitDeny"

    def test_not_action_and_not_resource(self):
        p = policy({"Effect": "Allow", "NotAction": "ecs:Delete*", "NotResource": "acs:vpc:*"})
        assert p.decide("ecs:DescribeSecurityGroups", SG) == "Allow"
        assert p.decide("ecs:DeleteSecurityGroup", SG) == "ImplicitDeny"
        assert p.decide("vpc:DescribeVpcAttribute", "acs:vpc:cn-hangzhou:1:vpc/vpc-1") == "ImplicitDeny"

    def test_an_unresolved_resource_is_decided_by_the_action_alone(self):
        p = policy(allow("cr:GetRepository", "acs:cr:*:*:repository/cri-1/apps/web"))
        assert p.decide("cr:GetRepository", None) == "Allow"
        assert p.decide("cr:CreateRepository", None) == "ImplicitDeny"


class TestGrammar:
    @pytest.mark.parametrize(
        "document, words",
        [
            ({"Statement": []}, "Version"),
            ({"Version": "1", "Statement": {}}, "list"),
            ({"Version": "1", "Statement": [{"Effect": "Permit", "Action": "*", "Resource": "*"}]}, "Effect"),
            ({"Version": "1", "Statement": [{"Effect": "Allow", "Resource": "*"}]}, "Action"),
            ({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*"}]}, "Resource"),
            ({"Version": "1", "Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}, "non-empty"),
            ({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Sid": "x"}]}, "Sid"),
            (
                {
                    "Version": "1",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "*",
                            "Resource": "*",
                            "Condition": {"Bool": {"acs:SecureTransport": "true"}},
                        }
                    ],
                },
                "Condition",
            ),
        ],
    )
    def test_what_the_sandbox_cannot_enforce_is_refused_naming_the_field(self, document, words):
        with pytest.raises(PolicyError, match=words):
            RamPolicy(document)

    def test_json_text_is_accepted(self):
        assert RamPolicy('{"Version": "1", "Statement": []}').decide("ecs:X", SG) == "ImplicitDeny"


@pytest.fixture
def world():
    return World()


class TestRequestTarget:
    def test_cr_repository_call_by_repo_id_names_namespace_and_repository(self, world):
        instance = next(iter(world.cr.instances))
        world.cr.add_namespace(instance, "apps")
        repo = world.cr.create_repository(instance, "apps", "web", "PRIVATE", "web")
        action, arn = request_target(
            world,
            "cr",
            "CreateBuildRecordByRule",
            {"InstanceId": repo.instance_id, "RepoId": repo.repo_id, "BuildRuleId": "x"},
        )
        assert action == "cr:BuildRepositoryByRule"
        assert arn == (
            f"acs:cr:cn-hangzhou:{world.account_id}:repository/{repo.instance_id}/{repo.namespace}/{repo.name}"
        )

    def test_cr_namespace_calls_and_instance_calls(self, world):
        assert request_target(world, "cr", "CreateNamespace", {"InstanceId": "cri-1", "NamespaceName": "apps"})[
            1
        ].endswith(":repository/cri-1/apps")
        assert request_target(world, "cr", "GetInstance", {"InstanceId": "cri-1"})[1].endswith(":instance/cri-1")
        assert request_target(world, "cr", "GetRepoBuildRecord", {"InstanceId": "cri-1", "BuildRecordId": "b"})[
            1
        ].endswith(":repository/cri-1")

    def test_cr_unknown_repo_id_is_unresolved(self, world):
        assert request_target(world, "cr", "GetRepoSourceCodeRepo", {"InstanceId": "cri-1", "RepoId": "crr-x"}) == (
            "cr:GetSourceRepository",
            None,
        )

    def test_ecs_groups_enis_creates_and_lists(self, world):
        base = f"acs:ecs:cn-hangzhou:{world.account_id}"
        assert request_target(world, "ecs", "RevokeSecurityGroup", {"SecurityGroupId": "sg-1"}) == (
            "ecs:RevokeSecurityGroup",
            f"{base}:securitygroup/sg-1",
        )
        assert (
            request_target(world, "ecs", "CreateNetworkInterface", {"SecurityGroupId": "sg-1"})[1]
            == f"{base}:networkinterface/*"
        )
        assert (
            request_target(world, "ecs", "ModifyNetworkInterfaceAttribute", {"NetworkInterfaceId": "eni-1"})[1]
            == f"{base}:networkinterface/eni-1"
        )
        assert request_target(world, "ecs", "DescribeSecurityGroups", {"SecurityGroupId": "sg-1"})[1] == f"{base}:*"

    def test_vpc_attributes_and_lists(self, world):
        base = f"acs:vpc:cn-hangzhou:{world.account_id}"
        assert request_target(world, "vpc", "DescribeVpcAttribute", {"VpcId": "vpc-1"})[1] == f"{base}:vpc/vpc-1"
        assert (
            request_target(world, "vpc", "DescribeVSwitchAttributes", {"VSwitchId": "vsw-1"})[1]
            == f"{base}:vswitch/vsw-1"
        )
        assert request_target(world, "vpc", "DescribeRouteEntryList", {"RouteTableId": "vtb-1"})[1] == f"{base}:*"


class TestAuthorize:
    def test_no_policy_allows_everything(self, world):
        authorize(world, "ecs", "DeleteSecurityGroup", {"SecurityGroupId": "sg-1"}, "AK")

    def test_refusals_carry_the_product_code_and_the_auth_action(self, world):
        world.ram_policy = policy(allow("ecs:DescribeSecurityGroups"))
        with pytest.raises(RamDenied) as ecs:
            authorize(world, "ecs", "DeleteSecurityGroup", {"SecurityGroupId": "sg-1"}, "AK")
        assert (ecs.value.code, ecs.value.status) == ("Forbidden.RAM", 403)
        assert ecs.value.extra["AccessDeniedDetail"]["AuthAction"] == "ecs:DeleteSecurityGroup"
        with pytest.raises(CrNoPrivilege) as cr:
            authorize(world, "cr", "GetInstance", {"InstanceId": "cri-1"}, "AK")
        assert (cr.value.code, cr.value.http_status) == ("NoPrivilege", 403)
        body = cr.value.body("req", "host", "cr")
        assert body["Code"] == "NoPrivilege" and body["AccessDeniedDetail"]["AuthAction"] == "cr:GetInstance"
