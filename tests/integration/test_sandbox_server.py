"""The sandbox server itself: routing, admin routes, unknown actions, the coverage table."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_tea_openapi.exceptions import ClientException

from acrvpc.cloud import clients as cloud
from acrvpc.sandbox.coverage import coverage_markdown, with_table
from tests.conftest import ROOT


def admin(sandbox, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        sandbox.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_instance(spec):
    client = cloud.cr_client(spec.region, cloud.resolve_access_key(None))
    return client.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)).body


class TestCallLog:
    def test_every_call_is_logged_with_product_action_and_write_flag(self, sandbox, spec):
        get_instance(spec)
        status, body = admin(sandbox, "GET", "/_sandbox/calls")
        assert status == 200
        call = body["calls"][-1]
        assert (call["product"], call["action"], call["writes"], call["status"]) == ("cr", "GetInstance", False, 200)

    def test_since_returns_only_newer_calls(self, sandbox, spec):
        get_instance(spec)
        get_instance(spec)
        _, body = admin(sandbox, "GET", "/_sandbox/calls?since=1")
        assert [c["seq"] for c in body["calls"]] == [2]


class TestReset:
    def test_reset_reseeds_state_and_clears_the_log(self, sandbox, spec):
        sandbox.world.cr.instances[spec.instance_id].status = "STOPPED"
        get_instance(spec)
        status, _ = admin(sandbox, "POST", "/_sandbox/reset", {})
        assert status == 200
        assert admin(sandbox, "GET", "/_sandbox/calls")[1]["calls"] == []
        assert get_instance(spec).instance_status == "RUNNING"


class TestSettings:
    def test_latency_is_added_to_every_call(self, sandbox, spec):
        admin(sandbox, "POST", "/_sandbox/settings", {"latency_ms": 300})
        started = time.monotonic()
        get_instance(spec)
        assert time.monotonic() - started >= 0.3

    def test_unknown_setting_is_refused_by_name(self, sandbox):
        status, body = admin(sandbox, "POST", "/_sandbox/settings", {"latency": 1})
        assert status == 400 and "latency" in body["error"]

    def test_time_scale_and_clock_advance(self, sandbox):
        _, settings = admin(sandbox, "POST", "/_sandbox/settings", {"time_scale": 5})
        assert settings["time_scale"] == 5
        before = sandbox.world.clock.now()
        _, body = admin(sandbox, "POST", "/_sandbox/clock/advance", {"seconds": 100})
        assert body["now"] >= before + 100


class TestFailNext:
    def test_next_n_calls_fail_with_the_injected_code(self, sandbox, spec):
        admin(sandbox, "POST", "/_sandbox/faults", {"action": "GetInstance", "count": 2, "code": "Throttling.User"})
        for _ in range(2):
            with pytest.raises(ClientException) as info:
                get_instance(spec)
            assert info.value.code == "Throttling.User"
        assert get_instance(spec).instance_status == "RUNNING"

    def test_missing_action_is_a_clear_error(self, sandbox):
        status, body = admin(sandbox, "POST", "/_sandbox/faults", {"count": 1})
        assert status == 400 and "action" in body["error"]


class TestRouting:
    def test_unknown_admin_route_lists_the_known_ones(self, sandbox):
        status, body = admin(sandbox, "GET", "/_sandbox/nope")
        assert status == 404 and "GET /_sandbox/calls" in body["routes"]

    def test_unknown_version_is_a_client_error(self, sandbox):
        req = urllib.request.Request(sandbox.url + "/?Action=GetInstance&Version=2099-01-01", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 400
        assert json.loads(info.value.read())["Code"] == "InvalidVersion"

    def test_not_emulated_action_is_not_found_not_a_500(self, sandbox, spec):
        client = cloud.cr_client(spec.region, cloud.resolve_access_key(None))
        with pytest.raises(ClientException) as info:
            client.list_chart_namespace(cr_models.ListChartNamespaceRequest(instance_id=spec.instance_id))
        assert (info.value.code, info.value.status_code) == ("InvalidAction.NotFound", 404)


class TestCoverageTable:
    def test_docs_table_is_current(self):
        doc = (ROOT / "docs" / "sandbox.md").read_text()
        assert doc == with_table(doc), "run: python -m acrvpc.sandbox.coverage --write"

    def test_table_lists_every_stage_action(self):
        table = coverage_markdown()
        for action in (
            "GetInstance",
            "CreateSecurityGroup",
            "CreateNetworkInterface",
            "DescribeVSwitchAttributes",
            "CreateRepoSourceCodeRepo",
            "CreateBuildRecordByRule",
            "GET /personal_access_tokens/self",
        ):
            assert action in table
