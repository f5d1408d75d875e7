"""The spec: the example loads, and every error names its field and the fix."""

from __future__ import annotations

import copy

import pytest
import yaml

from acrvpc.domain.spec import GitLabAccess, LinkMode, SpecError, load_spec, parse_spec
from tests.conftest import EXAMPLE_SPEC


@pytest.fixture
def data() -> dict:
    return yaml.safe_load(EXAMPLE_SPEC.read_text())


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "t.yaml")
    assert "nothing was created" in str(info.value)
    return dict(info.value.problems)


class TestLoadSpec:
    def test_example_spec_loads_with_defaults_filled(self):
        spec = load_spec(EXAMPLE_SPEC)
        assert spec.gitlab.access is GitLabAccess.ECS
        assert spec.link.mode is LinkMode.API
        assert spec.tag == ("acr-vpc-build:link", "demo-build")
        assert [t.label for t in spec.link.allowed_ips] == ["192.168.1.30/32:8081"]
        assert spec.repositories[0].code_repo_namespace == "platform"
        assert spec.repositories[0].code_repo_name == "billing-api"

    def test_missing_file_says_which_and_how(self, tmp_path):
        with pytest.raises(SpecError) as info:
            load_spec(tmp_path / "nope.yaml")
        assert "nope.yaml" in str(info.value) and "examples/sandbox.yaml" in str(info.value)

    def test_invalid_yaml_names_the_line(self, tmp_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: x\nregion: [cn-hangzhou\n")
        with pytest.raises(SpecError) as info:
            load_spec(bad)
        assert "line" in info.value.problems[0][0]


class TestFieldErrors:
    @pytest.mark.parametrize(
        ("path", "value", "field", "hint"),
        [
            (("network", "vpc_id"), "abc", "network.vpc_id", "vpc-"),
            (("network", "vswitch_id"), "vpc-1", "network.vswitch_id", "vsw-"),
            (("gitlab", "private_ip"), "192.168.1.300", "gitlab.private_ip", "IPv4"),
            (("gitlab", "endpoint"), "192.168.1.20", "gitlab.endpoint", "scheme"),
            (("gitlab", "port"), 70000, "gitlab.port", "65535"),
            (("gitlab", "access"), "vpn", "gitlab.access", "ecs"),
            (("instance_id",), "i-123", "instance_id", "cri-"),
            (("name",), "Demo_Build", "name", "lower-case"),
            (("region",), "hangzhou", "region", "cn-hangzhou"),
            (("link", "mode"), "manual", "link.mode", "api"),
            (("link", "allowed_ips"), ["maven.internal"], "link.allowed_ips", "CIDR"),
            (("network", "datacenter_cidrs"), ["10.0.0.1/8"], "network.datacenter_cidrs", "10.10.0.0/16"),
        ],
    )
    def test_bad_value_names_field_and_fix(self, data, path, value, field, hint):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        problems = problems_of(data)
        assert field in problems, problems
        assert hint in problems[field]

    def test_missing_required_field_says_what_it_is(self, data):
        del data["gitlab"]["username"]
        problems = problems_of(data)
        assert problems["gitlab.username"].startswith("is required")
        assert "GitLab user" in problems["gitlab.username"]

    def test_a_removed_section_says_what_to_add_with_its_required_fields(self, data):
        # given a spec without its network section
        del data["network"]
        # when it is validated
        message = problems_of(data)["network"]
        # then the problem names the section, what it is for, and the fields to write, with example values
        assert message.startswith("is required: The VPC side")
        assert "add the section" in message and "network: {vpc_id: vpc-bp1..., vswitch_id: vsw-bp1...}" in message
        assert "examples/sandbox.yaml" in message

    def test_a_removed_list_section_shows_an_entry_of_it(self, data):
        del data["repositories"]
        message = problems_of(data)["repositories"]
        assert "repositories: [{namespace: apps, name: billing-api, gitlab_project: platform/billing-api" in message

    def test_a_removed_scalar_gives_an_example_value(self, data):
        del data["network"]["vswitch_id"]
        assert "add it, e.g. vswitch_id: vsw-bp1..." in problems_of(data)["network.vswitch_id"]

    def test_unknown_field_is_reported_as_misspelling(self, data):
        data["gitlab"]["usrname"] = "x"
        assert "spelling" in problems_of(data)["gitlab.usrname"]

    def test_nested_rule_error_has_indexed_path(self, data):
        data["repositories"][1]["build_rules"][0]["push_type"] = "BRANCH"
        assert "repositories[1].build_rules[0].push_type" in problems_of(data)

    def test_every_problem_is_reported_at_once(self, data):
        data["network"]["vpc_id"] = "x"
        data["gitlab"]["private_ip"] = "x"
        assert {"network.vpc_id", "gitlab.private_ip"} <= set(problems_of(data))


class TestCrossFieldRules:
    def test_datacenter_access_needs_cidrs_and_vbr(self, data):
        data["gitlab"]["access"] = "datacenter"
        problems = problems_of(data)
        assert "network.datacenter_cidrs" in problems and "network.vbr_id" in problems

    def test_api_mode_needs_build_service_account(self, data):
        del data["link"]["build_service_account_id"]
        assert "link.mode: console" in problems_of(data)["link.build_service_account_id"]

    def test_duplicate_repository(self, data):
        data["repositories"].append(copy.deepcopy(data["repositories"][0]))
        assert any("listed twice" in m for m in problems_of(data).values())

    def test_top_level_must_be_mapping(self):
        with pytest.raises(SpecError):
            parse_spec(["a"], "t.yaml")
