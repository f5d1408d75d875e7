"""The spec as deployment state: its JSON form reads back as the same spec; resolve_spec's choices."""

from __future__ import annotations

import pytest
import yaml

from acrvpc.deploy import ALL, spec_of, spec_parameter
from acrvpc.domain.spec import SpecError, load_spec, parse_spec, resolve_spec
from tests.conftest import EXAMPLE_SPEC, ROOT


class TestSpecParameter:
    @pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
    def test_every_example_spec_reads_back_from_its_json_form(self, path):
        spec = load_spec(path)
        assert parse_spec(spec_parameter(spec)) == spec

    def test_a_deployment_names_its_flow_and_the_spec(self):
        spec = load_spec(EXAMPLE_SPEC)
        assert [d.name(spec) for d in ALL] == [
            f"vpc-build/{spec.name}",
            f"build-on-push/{spec.name}",
            f"teardown/{spec.name}",
        ]


class TestSpecOf:
    def test_the_spec_a_deployment_carries(self):
        spec = load_spec(EXAMPLE_SPEC)
        assert spec_of({"spec": spec_parameter(spec), "start_builds": True}, "deployment x") == spec

    def test_a_deployment_without_a_spec_says_how_to_deploy_one(self):
        with pytest.raises(SpecError) as caught:
            spec_of({"spec_path": "examples/sandbox.yaml"}, "deployment build-on-push/webhook")
        assert "acrvpc deploy SPEC" in str(caught.value) and caught.value.problems[0][0] == "spec"

    def test_an_invalid_spec_parameter_names_the_field(self):
        data = yaml.safe_load(EXAMPLE_SPEC.read_text())
        data["network"]["vpc_id"] = "abc"
        with pytest.raises(SpecError) as caught:
            spec_of({"spec": data}, "deployment vpc-build/demo-build")
        assert [f for f, _ in caught.value.problems] == ["network.vpc_id"]


class TestResolveSpec:
    def test_a_spec_object_is_used_as_it_is(self):
        spec = load_spec(EXAMPLE_SPEC)
        assert resolve_spec(spec) is spec

    def test_a_json_parameter_is_validated(self):
        spec = load_spec(EXAMPLE_SPEC)
        assert resolve_spec(spec_parameter(spec)) == spec

    def test_a_file(self):
        assert resolve_spec(spec_path=str(EXAMPLE_SPEC)) == load_spec(EXAMPLE_SPEC)

    def test_neither_says_what_to_give(self):
        with pytest.raises(SpecError) as caught:
            resolve_spec()
        assert "acrvpc deploy" in str(caught.value)

    def test_both_is_refused(self):
        spec = load_spec(EXAMPLE_SPEC)
        with pytest.raises(SpecError) as caught:
            resolve_spec(spec, str(EXAMPLE_SPEC))
        assert caught.value.problems[0][0] == "spec_path"
