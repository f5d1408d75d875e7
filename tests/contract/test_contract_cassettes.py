"""The cassettes themselves: generated from the documented examples, covering every action the
pipeline uses, matched without signatures, replayed offline, and free of secrets.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from alibabacloud_cr20181201.client import Client as CrClient
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_vpc20160428.client import Client as VpcClient
from vcr.request import Request

from tests.contract import make_cassettes, scenarios, support

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# The DESIGN stage table (shared/DESIGN.md "Stages (tasks/) and the APIs behind them").
DESIGN_TABLE = {
    "preflight": [
        "cr/GetInstance",
        "vpc/DescribeVpcAttribute",
        "vpc/DescribeVSwitchAttributes",
        "vpc/DescribeRouteTableList",
        "vpc/DescribeRouteEntryList",
        "vpc/DescribeVirtualBorderRouters",
        "ecs/DescribeInstances",
        "ecs/DescribeSecurityGroupAttribute",
        "ecs/AuthorizeSecurityGroup",
    ],
    "link": [
        "ecs/DescribeSecurityGroups",
        "ecs/DescribeSecurityGroupAttribute",
        "ecs/CreateSecurityGroup",
        "ecs/ModifySecurityGroupPolicy",
        "ecs/AuthorizeSecurityGroupEgress",
    ],
    "eni": ["ecs/DescribeNetworkInterfaces", "ecs/CreateNetworkInterface", "ecs/CreateNetworkInterfacePermission"],
    "gitlab": ["GET /user", "GET /personal_access_tokens/self", "GET /projects/:id"],
    "binding": [
        "cr/GetRepository",
        "cr/GetRepoSourceCodeRepo",
        "cr/ListRepoBuildRule",
        "cr/CreateNamespace",
        "cr/CreateRepository",
        "cr/CreateRepoSourceCodeRepo",
        "cr/CreateRepoBuildRule",
    ],
    "build": [
        "cr/GetRepoBuildRecordStatus",
        "cr/ListRepoBuildRecordLog",
        "cr/GetRepoBuildRecord",
        "cr/CreateBuildRecordByRule",
        "cr/CancelRepoBuildRecord",
    ],
}
# The stage modules whose calls must all be covered: tasks/<stage>.py of the DESIGN table, the webhook
# stage the pipeline runs when gitlab.register_webhook is true, and teardown.
STAGE_MODULES = ["preflight", "link", "eni", "gitlab_token", "binding", "build", "webhook_hook", "teardown"]
SDK_CLIENTS = {"cr": CrClient, "ecs": EcsClient, "vpc": VpcClient}
GITLAB_CALLS = {
    "auth": "GET /user",
    "personal_access_tokens.get": "GET /personal_access_tokens/self",
    "projects.get": "GET /projects/:id",
}
HOOK_CALLS = {
    "list": "GET /projects/:id/hooks",
    "create": "POST /projects/:id/hooks",
    "update": "PUT /projects/:id/hooks/:hook_id",
    "delete": "DELETE /projects/:id/hooks/:hook_id",
}


def stage_calls() -> set[str]:
    """Every SDK action and GitLab endpoint the stage modules call (read from their source)."""
    found: set[str] = set()
    for module in STAGE_MODULES:
        source = (ROOT / "tasks" / f"{module}.py").read_text(encoding="utf-8")
        for product, method in re.findall(r"\b(cr|ecs|vpc)\.([a-z_]+)\b", source):
            if not callable(getattr(SDK_CLIENTS[product], method, None)) or method.endswith("_with_options"):
                continue  # e.g. a Read named vpc: vpc.ok, vpc.value
            actions = {a.lower(): a for a in _actions(product)}
            action = actions.get(method.replace("_", ""), f"{method} (no documented example or error cassette)")
            found.add(f"{product}/{action}")
        for call in re.findall(r"\bgl\.([a-z_]+(?:\.[a-z_]+)?)\(", source):
            found.add(GITLAB_CALLS.get(call, f"gitlab call gl.{call}"))
        for call in re.findall(r"\.hooks\.([a-z_]+)\(", source):
            found.add(HOOK_CALLS.get(call, f"gitlab call hooks.{call}"))
    return found


def _actions(product: str) -> set[str]:
    return {record["action"] for record in make_cassettes.ALIBABA.values() if record["product"] == product} | {
        key.split("/")[1] for key in scenarios.ACTION_ERRORS if key.startswith(f"{product}/")
    }


def required() -> list[str]:
    """The DESIGN table's actions and endpoints plus everything the stage modules call."""
    return sorted({key for keys in DESIGN_TABLE.values() for key in keys} | stage_calls())


def _used_interactions() -> list[dict]:
    for path in sorted(HERE.glob("test_contract_*.py")):
        importlib.import_module(f"tests.contract.{path.stem}")  # fills support.USED
    return [item for name in sorted(support.USED) for item in support.interactions(name, make_cassettes.CASSETTES)]


class TestGeneratedCassettes:
    def test_committed_cassettes_are_what_make_cassettes_writes(self):
        # given the committed cassettes and the generator
        # when
        problems = make_cassettes.stale()
        # then (fix: python tests/contract/make_cassettes.py)
        assert problems == []

    def test_generation_is_deterministic(self):
        # given / when
        first, second = make_cassettes.cassettes(), make_cassettes.cassettes()
        # then
        assert first == second

    def test_documented_examples_are_sdk_model_round_trips(self):
        # given every documented Alibaba example
        problems = {}
        for key, record in make_cassettes.ALIBABA.items():
            module = importlib.import_module(
                f"alibabacloud_{record['product']}{record['version'].replace('-', '')}.models"
            )
            model = getattr(module, record["action"] + "ResponseBody")
            # when
            unknown = support.sdk_unknown_keys(model, record["body"])
            if unknown or model().from_map(record["body"]).to_map() != record["body"]:
                problems[key] = unknown or "value changed by the model"
        # then: every documented key is a key of its SDK response model, kept as is
        assert problems == {}

    def test_success_cassettes_hold_the_documented_examples(self):
        # given each action's success cassette
        problems = {}
        for key in list(make_cassettes.ALIBABA) + list(make_cassettes.GITLAB):
            (interaction,) = support.interactions(make_cassettes.action_cassette_name(key), make_cassettes.CASSETTES)
            record = make_cassettes.ALIBABA.get(key) or make_cassettes.GITLAB[key]
            # when
            same = support.response_json(interaction) == record["body"]
            # then
            if not same or support.endpoint_of(interaction) != key or support.is_error(interaction):
                problems[key] = support.endpoint_of(interaction)
        assert problems == {}

    def test_error_cassettes_have_the_documented_error_shape(self):
        # given each action's error cassettes
        problems = {}
        for key, codes in scenarios.ACTION_ERRORS.items():
            for code in codes:
                name = make_cassettes.action_cassette_name(key, code)
                (interaction,) = support.interactions(name, make_cassettes.CASSETTES)
                body, status = support.response_json(interaction), interaction["response"]["status"]["code"]
                # when
                if key in make_cassettes.GITLAB:
                    ok = status >= 400 and ("message" in body or "error" in body)
                elif status == 200:  # CR business error: HTTP 200, IsSuccess=false
                    ok = body == {"RequestId": body["RequestId"], "IsSuccess": False, "Code": code}
                else:
                    ok = (
                        list(body) == ["RequestId", "HostId", "Code", "Message", "Recommend"]
                        and body["Code"] == code
                        and body["HostId"] == make_cassettes.HOSTS[key.split("/")[0]]
                    )
                # then
                if not (ok and support.is_error(interaction)):
                    problems[name] = body
        assert problems == {}


class TestCoverage:
    def test_stage_modules_call_only_known_actions(self):
        # given the stage modules' source
        # when
        calls = stage_calls()
        # then: every call was recognised (an unknown gl.* call would show up here)
        assert not [c for c in calls if c.startswith("gitlab call")], calls
        assert {"cr/GetInstance", "ecs/DescribeSecurityGroups", "GET /projects/:id"} <= calls

    def test_every_action_has_success_and_error_cassettes(self):
        # given every action and endpoint the pipeline uses
        missing = []
        for key in required():
            # when
            success = make_cassettes.CASSETTES / make_cassettes.action_cassette_name(key)
            errors = [
                make_cassettes.CASSETTES / make_cassettes.action_cassette_name(key, code)
                for code in scenarios.ACTION_ERRORS.get(key, [])
            ]
            # then (fix: a documented example in tests/contract/examples/, an ACTION_ERRORS entry in scenarios.py)
            if not success.exists():
                missing.append(f"{key}: no success cassette")
            if not errors or not all(path.exists() for path in errors):
                missing.append(f"{key}: no error cassette")
        assert missing == []

    def test_every_action_is_replayed_by_a_contract_test(self):
        # given the cassettes the contract tests replay
        interactions = _used_interactions()
        # when
        succeeded = {support.endpoint_of(i) for i in interactions if not support.is_error(i)}
        failed = {support.endpoint_of(i) for i in interactions if support.is_error(i)}
        # then: each action's success and an error of it go through our code
        assert [k for k in required() if k not in succeeded] == []
        assert [k for k in required() if k not in failed] == []

    def test_replayed_cassettes_exist(self):
        # given the cassettes named by the contract tests
        _used_interactions()
        # then
        assert [n for n in sorted(support.USED) if not (make_cassettes.CASSETTES / n).exists()] == []


class TestMatching:
    def _request(self, action: str, nonce: str, signature: str) -> Request:
        return Request(
            "POST",
            f"https://{make_cassettes.HOSTS['cr']}/?InstanceId=cri-1",
            b"",
            {
                "x-acs-action": action,
                "x-acs-version": "2018-12-01",
                "x-acs-signature-nonce": nonce,
                "x-acs-date": "2024-03-01T08:00:00Z",
                "Authorization": f"ACS3-HMAC-SHA256 Credential=x,Signature={signature}",
            },
        )

    def test_action_matcher_ignores_signature_nonce_and_date(self):
        # given two requests of one action signed differently
        a, b = self._request("GetInstance", "n1", "s1"), self._request("GetInstance", "n2", "s2")
        # when / then: no AssertionError
        support.match_action(a, b)

    def test_action_matcher_tells_actions_apart(self):
        # given two actions on the same host and path
        a, b = self._request("GetInstance", "n", "s"), self._request("GetRepository", "n", "s")
        # when / then
        with pytest.raises(AssertionError):
            support.match_action(a, b)

    def test_v1_action_query_parameter_is_matched(self):
        # given a V1-signed request (Action in the query) and a V3 one (x-acs-action)
        v1 = Request("POST", f"https://{make_cassettes.HOSTS['cr']}/?Action=GetInstance&Signature=x", b"", {})
        # when / then
        support.match_action(v1, self._request("GetInstance", "n", "s"))

    def test_replay_is_offline_by_default(self, record_mode, vcr_config):
        # given no --record-mode option
        # then: pytest-recording replays only, matching on method, host, path and Action
        assert record_mode == "none"
        assert vcr_config["match_on"] == ["method", "host", "path", "action"]
        assert "record_mode" not in vcr_config  # so --record-mode can still record


class TestSecrets:
    def test_no_cassette_holds_a_secret(self):
        # given every cassette (committed, or recorded under ACRVPC_CASSETTE_DIR)
        paths = sorted(support.CASSETTE_DIR.rglob("*.yaml"))
        # when
        found = {
            str(p.relative_to(support.CASSETTE_DIR)): support.find_secrets(p.read_text(encoding="utf-8")) for p in paths
        }
        # then
        assert paths
        assert {name: lines for name, lines in found.items() if lines} == {}

    @pytest.mark.parametrize(
        "planted, what",
        [
            ("LTAI5tQz7Y1abcdEFGH12345", "an AccessKey id"),
            ("glpat-AbC123dEf456gHi789jK", "a GitLab personal access token"),
            ("owner 5123456789012345 here", "a 16-digit account id"),
        ],
    )
    def test_scanner_finds_planted_value(self, planted, what):
        # given a cassette body carrying a secret-looking value
        text = make_cassettes.render([make_cassettes.rpc("cr", "GetInstance", 200, {"RequestId": "R", "X": planted})])
        # when / then
        assert any(line.startswith(what) for line in support.find_secrets(text))

    @pytest.mark.parametrize(
        "header", ["Authorization", "x-acs-security-token", "x-acs-signature-nonce", "x-acs-date", "PRIVATE-TOKEN"]
    )
    def test_scanner_finds_secret_request_header(self, header):
        # given a recorded request that kept a secret header
        interaction = make_cassettes.ok("cr/GetInstance")
        interaction["request"]["headers"][header] = ["value"]
        # when / then
        assert f"request header {header}" in support.find_secrets(make_cassettes.render([interaction]))

    def test_scanner_finds_signature_query_parameters(self):
        # given a V1-signed request recorded with its AccessKeyId and Signature
        interaction = make_cassettes.ok("cr/GetInstance")
        interaction["request"]["uri"] += "?AccessKeyId=x&Signature=y&InstanceId=cri-1"
        # when
        found = support.find_secrets(make_cassettes.render([interaction]))
        # then
        assert {"query parameter AccessKeyId", "query parameter Signature"} <= set(found)

    def test_obviously_fake_account_ids_pass(self):
        # given made-up 16-digit ids and the documented masked ones
        text = make_cassettes.render(
            [
                make_cassettes.rpc(
                    "cr",
                    "GetInstance",
                    200,
                    {"RequestId": "R", "A": "1234567890123456", "B": 1111111111111111, "C": "123456789012****"},
                )
            ]
        )
        # when / then
        assert support.find_secrets(text) == []

    def test_scrubbed_real_answer_passes_the_scan(self):
        # given what a real account answers (account ids, a runners token, an e-mail)
        body = {
            "RequestId": "R",
            "OwnerId": 5123456789012345,
            "NetworkInterfaceSets": {
                "NetworkInterfaceSet": [{"OwnerId": "5123456789012345", "AccountId": 1654218965343050}]
            },
            "runners_token": "GR1348941abcdefghijklmnop",
            "email": "jane@corp.example",
        }
        interaction = make_cassettes.rpc("ecs", "DescribeNetworkInterfaces", 200, body)
        assert support.find_secrets(make_cassettes.render([interaction]))  # caught before scrubbing
        # when
        support.scrub_response(interaction["response"])
        # then
        assert support.find_secrets(make_cassettes.render([interaction])) == []
        scrubbed = support.response_json(interaction)
        assert scrubbed["OwnerId"] == support.FAKE_ACCOUNT_INT
        assert scrubbed["NetworkInterfaceSets"]["NetworkInterfaceSet"][0]["OwnerId"] == support.FAKE_ACCOUNT_STR
        assert scrubbed["email"] == "user@example.com"
