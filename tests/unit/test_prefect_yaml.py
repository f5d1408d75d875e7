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
