"""``acrvpc preflight`` against the sandbox (typer's CliRunner, ACRVPC_SANDBOX_URL set by the fixture):
exit codes, the JSON shape, and ``--fix`` with :func:`tasks.preflight_fix.fix_gitlab_ingress`; and, as a
subprocess without any credentials, the one fast error that names how to give them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from typer.testing import CliRunner

from acrvpc.cli.app import app
from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.spec import parse_spec
from tasks.preflight import CHECK_IDS
from tasks.preflight_fix import fix_gitlab_ingress
from tests.conftest import EXAMPLE_SPEC, ROOT

GITLAB_SG = "sg-bp1gitlab00000001"
BLOCK = "100.104.0.0/16"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def calls(sandbox, since: int = 0) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", params={"since": since}, timeout=5).json()["calls"]


def writes(sandbox, since: int = 0) -> list[str]:
    return [c["action"] for c in calls(sandbox, since) if c["writes"]]


def last_seq(sandbox) -> int:
    log = calls(sandbox)
    return log[-1]["seq"] if log else 0


def reverse_rules(sandbox) -> list[Any]:
    return [r for r in sandbox.world.ecs.groups[GITLAB_SG].rules if r.direction == "ingress" and r.cidr == BLOCK]


def remove_reverse_rule(sandbox) -> None:
    """The world where the GitLab ECS's group lacks the 100.104.0.0/16 rule."""
    group = sandbox.world.ecs.groups[GITLAB_SG]
    with sandbox.world.lock:
        group.rules = [r for r in group.rules if r.cidr != BLOCK]


def add_rule(sandbox, **fields: Any) -> None:
    from alibabacloud_ecs20140526 import models as m

    rule = {
        "policy": "accept",
        "priority": "1",
        "ip_protocol": "TCP",
        "port_range": "80/80",
        "source_cidr_ip": BLOCK,
        **fields,
    }
    ecs = cloud.ecs_client("cn-hangzhou", cloud.resolve_access_key(None))
    ecs.authorize_security_group(
        m.AuthorizeSecurityGroupRequest(
            region_id="cn-hangzhou",
            security_group_id=GITLAB_SG,
            permissions=[m.AuthorizeSecurityGroupRequestPermissions(**rule)],
        )
    )


def spec_file(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    edit(data)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def by_id(payload: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["id"]: c for c in payload["checks"]}


class TestPreflightCommand:
    def test_a_ready_world_exits_0_with_the_table_and_no_write(self, sandbox):
        # when
        result = invoke("preflight", str(EXAMPLE_SPEC))
        # then
        assert result.exit_code == 0, result.output
        for check_id in ("instance.running", "zone.vpc_mode", "gitlab.sg_ingress", "gitlab.token"):
            assert check_id in result.stdout
        assert "preflight passed" in result.stdout and "nothing was created" in result.stdout
        assert writes(sandbox) == []

    def test_json_prints_exactly_the_checks_with_four_fields(self, sandbox):
        result = invoke("preflight", str(EXAMPLE_SPEC), "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert list(payload) == ["checks"]
        assert [c["id"] for c in payload["checks"]] == list(CHECK_IDS)
        assert all(list(c) == ["id", "result", "detail", "fix"] for c in payload["checks"])
        assert {c["result"] for c in payload["checks"]} <= {"pass", "warn", "skip"}

    def test_a_failing_check_exits_1_naming_the_check_and_its_fix(self, sandbox):
        # given the GitLab group lacks the reverse-access rule
        remove_reverse_rule(sandbox)
        # when
        result = invoke("preflight", str(EXAMPLE_SPEC), "--json")
        # then
        assert result.exit_code == 1, result.output
        failed = by_id(json.loads(result.stdout))["gitlab.sg_ingress"]
        assert failed["result"] == "fail"
        assert f"AuthorizeSecurityGroup --RegionId cn-hangzhou --SecurityGroupId {GITLAB_SG}" in failed["fix"]
        assert writes(sandbox) == []

    def test_the_human_table_shows_the_failure_and_its_fix(self, sandbox):
        remove_reverse_rule(sandbox)
        result = invoke("preflight", str(EXAMPLE_SPEC))
        assert result.exit_code == 1
        assert "1 failed" in result.stdout and "AuthorizeSecurityGroup" in result.stdout

    def test_an_invalid_spec_exits_2_naming_the_field(self, sandbox, tmp_path):
        # given a spec whose VPC id is not one
        path = spec_file(tmp_path, lambda d: d["network"].update(vpc_id="192.168.0.0"))
        # when
        result = invoke("preflight", str(path))
        # then
        assert result.exit_code == 2
        assert "network.vpc_id" in result.stderr
        assert calls(sandbox) == []

    def test_a_missing_spec_file_exits_2(self, sandbox, tmp_path):
        result = invoke("preflight", str(tmp_path / "nope.yaml"), "--json")
        assert result.exit_code == 2 and "no such file" in result.stderr and result.stdout == ""


class TestPreflightFix:
    def test_fix_adds_the_missing_rule_says_so_and_then_passes(self, sandbox):
        # given
        remove_reverse_rule(sandbox)
        # when
        result = invoke("preflight", str(EXAMPLE_SPEC), "--fix")
        # then
        assert result.exit_code == 0, result.output
        assert f"--fix: AuthorizeSecurityGroup {GITLAB_SG} Accept TCP 80/80 from {BLOCK} (priority 1)" in result.stdout
        assert "--fix made 1 write(s)" in result.stdout
        assert writes(sandbox) == ["AuthorizeSecurityGroup"]
        [rule] = reverse_rules(sandbox)
        assert (rule.policy, rule.priority, rule.ip_protocol, rule.port_range) == ("Accept", 1, "TCP", "80/80")

    def test_fix_with_json_keeps_stdout_to_the_checks_and_reports_on_stderr(self, sandbox):
        remove_reverse_rule(sandbox)
        result = invoke("preflight", str(EXAMPLE_SPEC), "--fix", "--json")
        assert result.exit_code == 0, result.output
        assert by_id(json.loads(result.stdout))["gitlab.sg_ingress"]["result"] == "pass"
        assert "--fix: AuthorizeSecurityGroup" in result.stderr

    def test_fix_on_a_ready_world_writes_nothing(self, sandbox):
        result = invoke("preflight", str(EXAMPLE_SPEC), "--fix")
        assert result.exit_code == 0
        assert "nothing to fix automatically" in result.stdout
        assert writes(sandbox) == []

    def test_fix_never_overrides_a_drop_rule_aimed_at_the_block(self, sandbox):
        # given a priority-1 drop of the block next to the accept
        add_rule(sandbox, policy="drop")
        since = last_seq(sandbox)
        # when
        result = invoke("preflight", str(EXAMPLE_SPEC), "--fix", "--json")
        # then
        assert result.exit_code == 1
        assert "[FIX_NOT_APPLICABLE]" in result.stderr and "revoke drop rule" in result.stderr
        assert writes(sandbox, since) == []

    def test_fix_leaves_other_failures_to_the_person(self, sandbox, tmp_path):
        path = spec_file(tmp_path, lambda d: d["network"].update(datacenter_cidrs=["100.64.0.0/10"]))
        result = invoke("preflight", str(path), "--fix")
        assert result.exit_code == 1
        assert "nothing to fix automatically" in result.stdout and "cidr.datacenter_overlap" in result.stdout
        assert writes(sandbox) == []


class TestFixGitlabIngress:
    """The plain function behind --fix."""

    def test_adds_the_rule_once_and_then_finds_nothing_to_do(self, sandbox, spec):
        # given
        remove_reverse_rule(sandbox)
        ecs = cloud.cloud_clients(spec).ecs
        # when
        first = fix_gitlab_ingress(ecs, spec)
        second = fix_gitlab_ingress(ecs, spec)
        # then
        assert first == [f"AuthorizeSecurityGroup {GITLAB_SG} Accept TCP 80/80 from {BLOCK} (priority 1)"]
        assert second == []
        assert writes(sandbox) == ["AuthorizeSecurityGroup"]

    def test_a_rule_for_a_24_of_the_block_is_completed(self, sandbox, spec):
        # given only 100.104.0.0/24 is admitted
        remove_reverse_rule(sandbox)
        add_rule(sandbox, source_cidr_ip="100.104.0.0/24")
        # when
        done = fix_gitlab_ingress(cloud.cloud_clients(spec).ecs, spec)
        # then
        assert len(done) == 1 and len(reverse_rules(sandbox)) == 1

    def test_a_lower_precedence_deny_everything_rule_gets_the_exception(self, sandbox, spec):
        # given a "drop everything else" rule at priority 100 and no reverse rule
        remove_reverse_rule(sandbox)
        add_rule(
            sandbox, policy="drop", priority="100", ip_protocol="ALL", port_range="-1/-1", source_cidr_ip="0.0.0.0/0"
        )
        # when
        done = fix_gitlab_ingress(cloud.cloud_clients(spec).ecs, spec)
        # then
        assert done and reverse_rules(sandbox)

    def test_a_priority_1_drop_of_a_supernet_cannot_be_beaten(self, sandbox, spec):
        remove_reverse_rule(sandbox)
        add_rule(sandbox, policy="drop", ip_protocol="ALL", port_range="-1/-1", source_cidr_ip="100.64.0.0/10")
        since = last_seq(sandbox)
        with pytest.raises(PipelineError) as caught:
            fix_gitlab_ingress(cloud.cloud_clients(spec).ecs, spec)
        assert caught.value.code == "FIX_NOT_APPLICABLE"
        assert writes(sandbox, since) == []

    def test_no_instance_with_the_ip_is_not_guessed(self, sandbox):
        data = yaml.safe_load(EXAMPLE_SPEC.read_text())
        data["gitlab"]["private_ip"] = "192.168.1.99"
        spec = parse_spec(data)
        with pytest.raises(PipelineError) as caught:
            fix_gitlab_ingress(cloud.cloud_clients(spec).ecs, spec)
        assert caught.value.code == "FIX_NOT_APPLICABLE" and "gitlab.private_ip" in caught.value.fix
        assert writes(sandbox) == []

    def test_gitlab_behind_an_slb_is_not_applicable(self, sandbox):
        data = yaml.safe_load(EXAMPLE_SPEC.read_text())
        data["gitlab"]["access"] = "slb"
        spec = parse_spec(data)
        with pytest.raises(PipelineError) as caught:
            fix_gitlab_ingress(cloud.cloud_clients(spec).ecs, spec)
        assert caught.value.code == "FIX_NOT_APPLICABLE"
        assert calls(sandbox) == []


def no_credentials_env(home: Path) -> dict[str, str]:
    """A person's shell with no credentials at all: an empty HOME, no ALIBABA_CLOUD_* variable, no sandbox.
    The ECS metadata service stays disabled (tests never contact a non-loopback address)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "ACRVPC_", "PREFECT_API_"))}
    env.update(
        HOME=str(home), PREFECT_HOME=str(home / ".prefect"), ALIBABA_CLOUD_ECS_METADATA_DISABLED="true", COLUMNS="200"
    )
    return env


class TestForgottenCredentials:
    """No credentials anywhere: exit 2 at once, one message naming every way to give them, no traceback,
    no API call and no retry (the credential chain is resolved once, before anything else)."""

    @pytest.mark.parametrize("command", [["preflight"], ["plan"], ["run"], ["teardown", "--yes"]])
    def test_exits_2_within_2_s_naming_every_way_to_give_credentials(self, tmp_path, command):
        # given
        env = no_credentials_env(tmp_path)
        # when
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", *command, str(EXAMPLE_SPEC)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
        # then
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        assert "Traceback" not in output
        message = " ".join(proc.stderr.split())  # rich wraps long lines
        assert message.startswith("no Alibaba Cloud credentials found"), output
        for way in (
            "credentials.alibaba_block",
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "~/.alibabacloud/credentials",
            "RAM role",
        ):
            assert way in message, way
        assert proc.stdout == ""
        assert elapsed < 2.0, f"{elapsed:.2f} s"
