"""The SDKs' models packages loaded class by class (:mod:`acrvpc.cloud.sdk_models`, issue 18): the same classes,
under the same names, and only those a command reads. Each case runs in a fresh interpreter (the models a test
process has already imported are left as they are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from acrvpc.cloud.sdk_models import SDK_PACKAGES, generated_exports

ROOT = Path(__file__).resolve().parents[2]


def fresh(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACRVPC_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_name_of_every_package_is_the_class_its_generated_module_defines():
    result = fresh(
        """
        import importlib, json, re, sys
        from pathlib import Path
        from acrvpc.cloud.sdk_models import SDK_PACKAGES, lazy_models

        done = lazy_models()
        report = {"done": done, "loaded_before": len([m for m in sys.modules if ".models._" in m])}
        for package in SDK_PACKAGES:
            models = importlib.import_module(f"{package}.models")
            source = Path(models.__file__).read_text()
            pairs = re.findall(r"^from \\.(_\\w+) import (\\w+)$", source, re.M)
            wrong = [n for m, n in pairs if getattr(models, n) is not getattr(
                importlib.import_module(f"{package}.models.{m}"), n)]
            report[package] = {"names": len(pairs), "all": len(models.__all__), "dir": len(set(dir(models)) &
                               set(models.__all__)), "wrong": wrong, "attr": getattr(sys.modules[package], "models")
                               is models}
        print(json.dumps(report))
        """
    )
    assert result["done"] == list(SDK_PACKAGES)
    assert result["loaded_before"] == 0
    for package in SDK_PACKAGES:
        seen = result[package]
        assert seen["names"] > 400 and seen["all"] == seen["names"] == seen["dir"], seen
        assert seen["wrong"] == [] and seen["attr"] is True


def test_the_sdk_clients_load_only_the_models_a_call_reads_and_answer_as_before():
    result = fresh(
        """
        import json, os, sys
        from acrvpc.cloud.sdk_models import lazy_models
        from acrvpc.sandbox import SandboxServer

        lazy_models()
        with SandboxServer() as sandbox:
            os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
            from alibabacloud_vpc20160428 import models
            from alibabacloud_vpc20160428.models import DescribeVpcAttributeRequest
            from acrvpc.cloud.clients import cloud_clients
            from acrvpc.domain.spec import load_spec

            spec = load_spec(os.path.join(os.environ["PYTHONPATH"], "examples", "sandbox.yaml"))
            clients = cloud_clients(spec)
            body = clients.vpc.describe_vpc_attribute(
                DescribeVpcAttributeRequest(region_id=spec.region, vpc_id=spec.network.vpc_id)).body
            try:
                models.NoSuchModel
                missing = None
            except AttributeError as exc:
                missing = str(exc)
        print(json.dumps({"vpc": body.vpc_id, "body": type(body).__name__,
                          "loaded": len([m for m in sys.modules if ".models._" in m]), "missing": missing}))
        """
    )
    assert result["body"] == "DescribeVpcAttributeResponseBody" and result["vpc"].startswith("vpc-")
    assert result["loaded"] < 20  # of 4259
    assert "has no attribute 'NoSuchModel'" in result["missing"]


def test_a_models_package_that_is_not_the_generated_one_is_left_to_load_as_usual():
    generated = (
        "# -*- coding: utf-8 -*-\nfrom __future__ import annotations\n\n"
        "from ._a_request import ARequest\nfrom ._a_response import AResponse\n\n"
        "__all__ = [\n    ARequest,\n    AResponse\n]\n"
    )
    assert generated_exports(generated) == {"ARequest": "_a_request", "AResponse": "_a_response"}
    assert generated_exports(generated + "ARequest.patched = True\n") is None
    assert generated_exports(generated.replace("    AResponse\n", "")) is None  # __all__ differs
    assert generated_exports("from ._a import *\n") is None
