"""acrvpc.domain.actions (the declared list) and acrvpc.domain.policy (the generator): pure logic, no sandbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from acrvpc.domain import actions
from acrvpc.domain.policy import merge, policy_actions, policy_for, without_action
from acrvpc.domain.spec import parse_spec
from tests.conftest import EXAMPLE_SPEC, ROOT


def example(**sections):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    for name, values in sections.items():
        data[name].update(values)
    return parse_spec(data)


API = example()
CONSOLE = example(link={"mode": "console"})
DATACENTER = example(
    network={"datacenter_cidrs": ["10.20.0.0/16"], "vbr_id": "vbr-bp1idc000000000001"},
    gitlab={"access": "datacenter", "private_ip": "10.20.1.5", "endpoint": "http://10.20.1.5"},
)
ECS_WRITES = {
    "ecs:CreateSecurityGroup",
    "ecs:AuthorizeSecurityGroupEgress",
    "ecs:RevokeSecurityGroupEgress",
    "ecs:RevokeSecurityGroup",
    "ecs:ModifySecurityGroupPolicy",
    "ecs:CreateNetworkInterface",
    "ecs:CreateNetworkInterfacePermission",
    "ecs:ModifyNetworkInterfaceAttribute",
    "ecs:DeleteNetworkInterface",
    "ecs:DeleteNetworkInterfacePermission",
    "ecs:DeleteSecurityGroup",
    "ecs:AuthorizeSecurityGroup",
}


def statement_for(policy, action):
    (found,) = [s for s in policy["Statement"] if action in s["Action"]]
    return found


class TestPolicyShape:
    def test_is_ram_grammar_version_1_with_allow_statements_only(self):
        policy = policy_for(API)
        assert policy["Version"] == "1"
        assert all(set(s) == {"Effect", "Action", "Resource"} and s["Effect"] == "Allow" for s in policy["Statement"])
        assert all(re.fullmatch(r"(cr|ecs|vpc):[A-Za-z]+", a) for s in policy["Statement"] for a in s["Action"])

    def test_each_action_appears_in_one_statement(self):
        policy = policy_for(API, with_fix=True, with_teardown=True)
        names = [a for s in policy["Statement"] for a in s["Action"]]
        assert len(names) == len(set(names))

    def test_is_stable(self):
        assert policy_for(API) == policy_for(example())


class TestLinkModes:
    def test_api_mode_has_the_link_and_eni_writes(self):
        granted = policy_actions(policy_for(API))
        assert {
            "ecs:CreateSecurityGroup",
            "ecs:CreateNetworkInterface",
            "ecs:CreateNetworkInterfacePermission",
        } <= granted

    def test_console_mode_has_no_ecs_write(self):
        granted = policy_actions(policy_for(CONSOLE))
        assert granted & ECS_WRITES == set()
        assert {
            "ecs:DescribeSecurityGroups",
            "ecs:DescribeNetworkInterfaces",
            "ecs:DescribeSecurityGroupAttribute",
        } <= granted

    def test_both_modes_bind_and_build_under_cr_names(self):
        for spec in (API, CONSOLE):
            granted = policy_actions(policy_for(spec))
            assert {
                "cr:BuildRepositoryByRule",
                "cr:GetBuildRepositoryStatus",
                "cr:CancelBuildRepository",
                "cr:CreateSourceRepository",
                "cr:CreateRepositoryBuildRule",
            } <= granted
            assert "cr:CreateBuildRecordByRule" not in granted  # the API name is not the RAM action


class TestOptions:
    def test_fix_adds_only_authorize_security_group_on_groups(self):
        extra = policy_actions(policy_for(API, with_fix=True)) - policy_actions(policy_for(API))
        assert extra == {"ecs:AuthorizeSecurityGroup"}
        assert statement_for(policy_for(API, with_fix=True), "ecs:AuthorizeSecurityGroup")["Resource"] == [
            "acs:ecs:cn-hangzhou:*:securitygroup/*"
        ]

    def test_fix_is_not_offered_when_gitlab_is_not_on_ecs(self):
        assert "ecs:AuthorizeSecurityGroup" not in policy_actions(policy_for(DATACENTER, with_fix=True))

    def test_teardown_adds_the_deletes_in_console_mode(self):
        extra = policy_actions(policy_for(CONSOLE, with_teardown=True)) - policy_actions(policy_for(CONSOLE))
        assert extra == {
            "ecs:DescribeNetworkInterfacePermissions",
            "ecs:DeleteNetworkInterfacePermission",
            "ecs:DeleteNetworkInterface",
            "ecs:DeleteSecurityGroup",
        }

    def test_api_mode_already_has_the_rollback_deletes(self):
        assert {"ecs:DeleteNetworkInterface", "ecs:DeleteSecurityGroup"} <= policy_actions(policy_for(API))

    def test_unknown_option_is_refused(self):
        with pytest.raises(ValueError, match="unknown policy option"):
            actions.stages_for(API, ["everything"])


class TestConditions:
    def test_gitlab_on_ecs_reads_its_instance_and_group(self):
        assert "ecs:DescribeInstances" in policy_actions(policy_for(API))
        assert "ecs:DescribeInstances" not in policy_actions(policy_for(DATACENTER))

    def test_a_vbr_adds_its_reads(self):
        vbr = {"vpc:DescribeVirtualBorderRouters", "vpc:DescribeRouteEntryList"}
        assert vbr <= policy_actions(policy_for(DATACENTER))
        assert vbr & policy_actions(policy_for(API)) == set()


class TestResources:
    def test_cr_repository_actions_are_scoped_to_the_spec_repositories(self):
        resources = statement_for(policy_for(API), "cr:BuildRepositoryByRule")["Resource"]
        assert resources == sorted(
            f"acs:cr:cn-hangzhou:*:repository/cri-sandbox0demo0001/{r.full_name}" for r in API.repositories
        )

    def test_instance_namespace_vpc_and_vswitch_are_the_spec_ones(self):
        policy = policy_for(API)
        assert statement_for(policy, "cr:GetInstance")["Resource"] == [
            "acs:cr:cn-hangzhou:*:instance/cri-sandbox0demo0001"
        ]
        assert statement_for(policy, "cr:CreateNamespace")["Resource"] == [
            "acs:cr:cn-hangzhou:*:repository/cri-sandbox0demo0001/apps"
        ]
        assert statement_for(policy, "vpc:DescribeVpcAttribute")["Resource"] == [
            "acs:vpc:cn-hangzhou:*:vpc/vpc-bp1sandbox00000001"
        ]
        assert statement_for(policy, "vpc:DescribeVSwitchAttributes")["Resource"] == [
            "acs:vpc:cn-hangzhou:*:vswitch/vsw-bp1build000000001"
        ]

    def test_list_actions_are_region_wide(self):
        assert statement_for(policy_for(API), "ecs:DescribeSecurityGroups")["Resource"] == ["acs:ecs:cn-hangzhou:*:*"]

    def test_no_statement_grants_everything(self):
        assert all(r != "*" and ":cn-hangzhou:" in r for s in policy_for(API)["Statement"] for r in s["Resource"])

    def test_any_ids_keeps_actions_and_resource_types(self):
        wide = policy_for(API, any_ids=True)
        assert policy_actions(wide) == policy_actions(policy_for(API))
        assert statement_for(wide, "cr:BuildRepositoryByRule")["Resource"] == ["acs:cr:cn-hangzhou:*:repository/*/*/*"]


class TestHelpers:
    def test_without_action_drops_it_and_empty_statements(self):
        policy = without_action(policy_for(API), "cr:GetInstance")
        assert "cr:GetInstance" not in policy_actions(policy)
        assert policy_actions(policy) == policy_actions(policy_for(API)) - {"cr:GetInstance"}

    def test_merge_is_the_union(self):
        merged = merge([policy_for(API), policy_for(CONSOLE)])
        assert policy_actions(merged) == policy_actions(policy_for(API)) | policy_actions(policy_for(CONSOLE))


class TestDeclarations:
    def test_conflicting_declarations_are_refused(self):
        a = actions.Api("ecs", "DescribeSecurityGroups", "ecs:DescribeSecurityGroups", actions.REGION)
        b = actions.Api("ecs", "DescribeSecurityGroups", "ecs:DescribeSecurityGroups", actions.SECURITY_GROUP)
        with pytest.raises(ValueError, match="declared twice"):
            actions._check_declarations(
                [actions.Stage("x", actions.BOTH, (a,), "x"), actions.Stage("y", actions.BOTH, (b,), "y")]
            )

    def test_unknown_resource_kind_is_refused(self):
        with pytest.raises(ValueError, match="resource kind"):
            actions.Api("ecs", "DescribeRegions", "ecs:DescribeRegions", "everything")

    def test_every_sdk_call_in_the_stages_is_declared(self):
        # each SDK method the stage code calls, mapped to the API action its *_with_options sends
        import inspect

        from alibabacloud_cr20181201.client import Client as Cr
        from alibabacloud_ecs20140526.client import Client as Ecs
        from alibabacloud_vpc20160428.client import Client as Vpc

        sources = [p for d in ("tasks", "flows") for p in (ROOT / d).glob("*.py")]
        names = {m for p in sources for m in re.findall(r"\b(cr|ecs|vpc)\.([a-z][a-z_]+)\(", p.read_text())}
        clients = {"cr": Cr, "ecs": Ecs, "vpc": Vpc}
        called = set()
        for product, name in names:
            method = getattr(clients[product], f"{name}_with_options", None)
            if method is not None:
                called.add((product, re.search(r"action\s*=\s*'(\w+)'", inspect.getsource(method)).group(1)))
        assert len(called) > 10
        assert {(p, a) for p, a in called if a not in actions.declared(p)} == set()

    def test_no_stage_builds_a_client_around_the_guard(self):
        # only acrvpc.cloud.clients.cloud_clients (guarded) may give the pipeline a client
        offenders = []
        for directory in ("tasks", "flows", "deployments", "acrvpc/cli/commands"):
            assert (ROOT / directory).is_dir(), directory
            for path in (ROOT / directory).glob("*.py"):
                if re.search(r"cloud\.(cr|ecs|vpc)_client\(|import (cr|ecs|vpc)_client", path.read_text()):
                    offenders.append(str(path.relative_to(ROOT)))
        assert offenders == []


class TestPolicyFileIsValidJson:
    def test_to_json_round_trips(self, tmp_path: Path):
        import json

        from acrvpc.domain.policy import to_json

        out = tmp_path / "p.json"
        out.write_text(to_json(policy_for(API)))
        assert json.loads(out.read_text()) == policy_for(API)


class TestDocs:
    def test_the_stage_table_in_docs_policy_md_is_current(self):
        from acrvpc.domain.policy import stages_markdown

        text = (ROOT / "docs" / "policy.md").read_text()
        embedded = text.split("<!-- stages:begin -->\n", 1)[1].split("\n<!-- stages:end -->", 1)[0]
        assert embedded == stages_markdown(), "regenerate the table with acrvpc.domain.policy.stages_markdown()"
