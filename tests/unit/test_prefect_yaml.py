"""prefect.yaml names real flows with parameters they accept."""

from __future__ import annotations

import importlib
import inspect

import yaml

from tests.conftest import ROOT


def test_every_deployment_entrypoint_loads_and_takes_its_parameters():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"], "prefect.yaml declares no deployment"
    for deployment in config["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted, deployment["name"]
        spec_path = deployment.get("parameters", {}).get("spec_path")
        if spec_path:
            assert (ROOT / spec_path).exists(), f"{deployment['name']}: {spec_path} does not exist"


def _deployments() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    flows = {}
    for deployment in config["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flows[f"{getattr(module, name).name}/{deployment['name']}"] = deployment
    return flows


def test_the_pipeline_on_push_and_teardown_deployments_are_declared():
    assert {"vpc-build/nightly", "build-on-push/webhook", "teardown/manual"} <= set(_deployments())


def test_scheduled_deployments_give_every_required_parameter():
    # A scheduled run has nobody to supply parameters: the deployment must give each one without a default.
    for name, deployment in _deployments().items():
        if not deployment.get("schedules"):
            continue
        path, _, attr = deployment["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)
        required = {p.name for p in inspect.signature(flow.fn).parameters.values() if p.default is p.empty}
        assert required <= set(deployment.get("parameters", {})), name
        assert all(s.get("cron") or s.get("interval") or s.get("rrule") for s in deployment["schedules"]), name


def test_the_receiver_starts_the_deployment_the_spec_names_with_parameters_its_flow_takes():
    from acrvpc.domain.spec import load_spec
    from flows.on_push import build_on_push

    spec = load_spec(ROOT / "examples" / "sandbox.yaml")
    deployment = _deployments()[spec.webhook.deployment]
    assert deployment["entrypoint"] == "flows/on_push.py:build_on_push"
    assert not deployment.get("schedules")
    # deployments/webhook.py passes these; the spec comes from the deployment: a spec parameter (acrvpc deploy)
    # or, for prefect.yaml's deployments, spec_path (or --run-spec)
    assert {"project", "ref", "sha", "event_id", "spec", "spec_path"} == set(
        inspect.signature(build_on_push.fn).parameters
    )
    assert "spec_path" in deployment["parameters"]
