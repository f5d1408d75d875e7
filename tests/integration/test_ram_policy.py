"""Least privilege, proven against the sandbox: the generated RAM policy, enforced, is exactly enough.

* the pipeline's paths under the exact (id-scoped) policy of ``acrvpc policy`` make every call they
  need and nothing else: the call log's RAM actions equal the policy's (no missing, no unused);
* removing one action makes the stage that needs it fail with the provider's code and a message
  naming the RAM action;
* the pipeline's clients refuse an undeclared action before sending it;
* the sandbox's admin route and ``acrvpc policy`` / ``acrvpc sandbox --ram-policy``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import yaml
from alibabacloud_cr20181201 import models as cr_models
from typer.testing import CliRunner

from acrvpc.cli.app import app
from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError, explain
from acrvpc.domain import actions
from acrvpc.domain.policy import merge, policy_actions, policy_for, without_action
from acrvpc.domain.spec import parse_spec
from tasks.binding import bind_repository
from tasks.build import run_build
from tasks.console import check_account, verify_console_link
from tasks.eni import ensure_network_interface
from tasks.link import ensure_security_group
from tasks.on_push import verify_binding
from tasks.preflight import observe
from tasks.preflight_fix import fix_gitlab_ingress
from tasks.teardown import teardown_link
from tests.conftest import EXAMPLE_SPEC

REGION = "cn-hangzhou"
GITLAB_SG = "sg-bp1gitlab00000001"
BLOCK = "100.104.0.0/16"
LINK = {
    "instance_id": "cri-sandbox0demo0001",
    "vpc_id": "vpc-bp1sandbox00000001",
    "vswitch_id": "vsw-bp1build000000001",
    "gitlab_ip": "192.168.1.20",
    "gitlab_port": 80,
    "allowed": ["192.168.1.30:8081"],
}


def example(**sections: dict[str, Any]):
    """examples/sandbox.yaml with some sections updated."""
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
# Every option of every path this module runs, exactly scoped to the example's ids.
EVERYTHING = merge(
    [
        policy_for(API, with_fix=True, with_teardown=True),
        policy_for(CONSOLE, with_fix=True, with_teardown=True),
        policy_for(DATACENTER),
    ]
)
EXACT_API = policy_for(API, with_fix=True, with_teardown=True)


def calls(sandbox, since: int = 0) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", params={"since": since}, timeout=5).json()["calls"]


def ram_actions_called(sandbox) -> set[str]:
    return {actions.ram_action(c["product"], c["action"]) for c in calls(sandbox) if c["product"] != "gitlab"}


@pytest.fixture
def sleep(sandbox):
    """A ``sleep`` that moves the sandbox clock instead of waiting."""
    return sandbox.world.clock.advance


@pytest.fixture
def frozen(sandbox, monkeypatch):
    """A frozen sandbox clock and a build network that reaches GitLab (builds are followed by hand)."""
    sandbox.world.clock.set_scale(0)
    monkeypatch.setattr(sandbox.world.ecs, "reaches", lambda account_id, ip, port: (True, ""))
    return sandbox.world


class SandboxTime:
    def __init__(self, world) -> None:
        self.world = world

    def sleep(self, seconds: float) -> None:
        self.world.clock.advance(seconds)

    def clock(self) -> float:
        return self.world.clock.now()


@pytest.mark.ram_policy(EVERYTHING)
class TestEveryPathUnderTheExactPolicy:
    def test_calls_and_policy_are_the_same_set_of_ram_actions(self, sandbox, frozen, sleep):
        world = sandbox.world
        api, console_clients, dc = (cloud.cloud_clients(s) for s in (API, CONSOLE, DATACENTER))
        # given GitLab's group without the reverse-access rule, preflight (both access kinds) and its --fix
        with world.lock:
            world.ecs.groups[GITLAB_SG].rules = [r for r in world.ecs.groups[GITLAB_SG].rules if r.cidr != BLOCK]
        observe(api, API)
        observe(dc, DATACENTER)
        assert fix_gitlab_ingress(api.ecs, API)
        # link, then drift on every rule kind and a rerun that converges it
        gid = ensure_security_group(api.ecs, API).security_group_id
        world.ecs.authorize(
            REGION, gid, "ingress", [{"IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}]
        )
        world.ecs.authorize(
            REGION, gid, "egress", [{"IpProtocol": "TCP", "PortRange": "443/443", "DestCidrIp": "0.0.0.0/0"}]
        )
        world.ecs.groups[gid].inner_access_policy = "Accept"
        assert ensure_security_group(api.ecs, API).changes
        # the ENI, then drift on its groups
        eni = ensure_network_interface(api.ecs, API, gid, sleep=sleep).network_interface_id
        world.ecs.enis[eni].security_group_ids = [gid, GITLAB_SG]
        assert ensure_network_interface(api.ecs, API, gid, sleep=sleep).changes
        # bindings, then drift on a source binding
        bound = [bind_repository(api.cr, API, repo) for repo in API.repositories]
        world.cr.repos[bound[0].repo_id].source.oversea_build = True
        assert bind_repository(api.cr, API, API.repositories[0]).changes
        # a build to the end, one canceled at its timeout, and an on-push check
        t = SandboxTime(world)
        assert run_build(api.cr, API, bound[0], bound[0].rules[0], sleep=t.sleep, clock=t.clock).status == "SUCCESS"
        world.cr.hang_repos.add(bound[0].full_name)
        short = API.model_copy(update={"build": API.build.model_copy(update={"timeout_minutes": 0.1})})
        assert run_build(api.cr, short, bound[0], bound[0].rules[0], sleep=t.sleep, clock=t.clock).status == "TIMEOUT"
        verify_binding(api.cr, API, API.repositories[0], API.repositories[0].build_rules[0])
        # teardown of the api link, then console mode's verification of a console-made link
        teardown_link(api.ecs, API, sleep=sleep)
        assert requests.post(f"{sandbox.url}/_sandbox/console/link", json=LINK, timeout=5).status_code == 200
        world.clock.advance(world.ecs.attach_seconds + 1)
        verify_console_link(console_clients.ecs, CONSOLE)
        assert check_account(console_clients.cr, CONSOLE).bound is True

        # then every call was allowed, and the calls' RAM actions are exactly the policy's
        assert [c for c in calls(sandbox) if c["status"] == 403] == []
        called = ram_actions_called(sandbox)
        assert sorted(called - policy_actions(EVERYTHING)) == [], "called but not in the policy"
        assert sorted(policy_actions(EVERYTHING) - called) == [], "in the policy but never called"

    def test_every_declared_action_is_in_some_generated_policy(self):
        declared = {api.ram_action for api in actions.DECLARED.values()}
        assert declared == policy_actions(EVERYTHING)


@pytest.mark.ram_policy(without_action(EXACT_API, "ecs:CreateNetworkInterface"))
class TestMissingEcsAction:
    def test_eni_stage_fails_with_forbidden_ram_naming_the_action(self, sandbox, spec, sleep):
        ecs = cloud.cloud_clients(spec).ecs
        gid = ensure_security_group(ecs, spec).security_group_id
        with pytest.raises(PipelineError) as err:
            ensure_network_interface(ecs, spec, gid, sleep=sleep)
        assert err.value.code == "Forbidden.RAM"
        assert "ecs:CreateNetworkInterface" in str(err.value)
        assert "acrvpc policy" in str(err.value)
        assert [e for e in sandbox.world.ecs.enis.values() if e.tags] == []  # nothing was created


@pytest.mark.ram_policy(without_action(EXACT_API, "cr:BuildRepositoryByRule"))
class TestMissingCrAction:
    def test_build_fails_with_no_privilege_naming_the_ram_action(self, sandbox, frozen, spec):
        cr = cloud.cloud_clients(spec).cr
        bound = bind_repository(cr, spec, spec.repositories[0])
        with pytest.raises(Exception) as err:
            run_build(cr, spec, bound, bound.rules[0])
        assert getattr(err.value, "code", None) == "NoPrivilege"
        assert "cr:BuildRepositoryByRule" in explain(err.value)
        assert [c["action"] for c in calls(sandbox) if c["status"] == 403] == ["CreateBuildRecordByRule"]


@pytest.mark.ram_policy(EXACT_API)
class TestResourceScope:
    def test_the_exact_policy_runs_link_eni_and_binding(self, sandbox, spec, sleep):
        clients = cloud.cloud_clients(spec)
        gid = ensure_security_group(clients.ecs, spec).security_group_id
        ensure_network_interface(clients.ecs, spec, gid, sleep=sleep)
        bind_repository(clients.cr, spec, spec.repositories[0])
        assert [c for c in calls(sandbox) if c["status"] == 403] == []

    def test_a_repository_outside_the_spec_is_refused(self, sandbox, spec):
        other = spec.repositories[0].model_copy(update={"name": "not-in-the-spec"})
        with pytest.raises(Exception) as err:
            bind_repository(cloud.cloud_clients(spec).cr, spec, other)
        assert getattr(err.value, "code", None) == "NoPrivilege"
        assert err.value.access_denied_detail["AuthAction"] == "cr:GetRepository"
        assert not any(r.name == "not-in-the-spec" for r in sandbox.world.cr.repos.values())

    def test_another_vpc_is_refused(self, sandbox, spec):
        from alibabacloud_vpc20160428 import models as vpc_models

        vpc = cloud.cloud_clients(spec).vpc
        with pytest.raises(Exception) as err:
            vpc.describe_vpc_attribute(vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id="vpc-other"))
        assert err.value.code == "Forbidden.RAM"
        assert err.value.access_denied_detail["NoPermissionType"] == "ImplicitDeny"


class TestUndeclaredAction:
    def test_is_refused_before_anything_is_sent(self, sandbox, spec):
        cr = cloud.cloud_clients(spec).cr
        with pytest.raises(PipelineError) as err:
            cr.list_instance(cr_models.ListInstanceRequest())
        assert err.value.code == "ACTION_NOT_DECLARED"
        assert "ListInstance" in str(err.value) and actions.THIS_FILE in str(err.value)
        assert calls(sandbox) == []


class TestRamAdminRoute:
    @pytest.mark.ram_policy(None)
    def test_loads_shows_clears_and_survives_reset(self, sandbox, spec):
        url = f"{sandbox.url}/_sandbox/ram"
        deny = {
            "Version": "1",
            "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "cr:GetInstance", "Resource": "*"},
            ],
        }
        assert requests.post(url, json={"policy": deny}, timeout=5).status_code == 200
        requests.post(f"{sandbox.url}/_sandbox/reset", json={}, timeout=5)
        assert requests.get(url, timeout=5).json() == {"policy": deny}
        with pytest.raises(Exception) as err:
            cloud.cloud_clients(spec).cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))
        assert err.value.code == "NoPrivilege"
        assert err.value.access_denied_detail["NoPermissionType"] == "ExplicitDeny"
        assert requests.post(url, json={"policy": None}, timeout=5).json() == {"policy": None}
        cloud.cloud_clients(spec).cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id))

    @pytest.mark.ram_policy(None)
    def test_a_policy_with_a_condition_is_refused_and_changes_nothing(self, sandbox):
        url = f"{sandbox.url}/_sandbox/ram"
        bad = {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}},
                }
            ],
        }
        resp = requests.post(url, json={"policy": bad}, timeout=5)
        assert resp.status_code == 400 and "Condition" in resp.json()["error"]
        assert requests.get(url, timeout=5).json() == {"policy": None}


class TestPolicyCommand:
    def test_prints_only_the_policy_json(self):
        result = CliRunner().invoke(app, ["policy", str(EXAMPLE_SPEC)])
        assert result.exit_code == 0
        assert json.loads(result.stdout) == policy_for(API)

    def test_options_and_output_file(self, tmp_path):
        out = tmp_path / "policy.json"
        result = CliRunner().invoke(app, ["policy", str(EXAMPLE_SPEC), "--with-fix", "--with-teardown", "-o", str(out)])
        assert result.exit_code == 0 and result.stdout == ""
        assert json.loads(out.read_text()) == EXACT_API

    def test_a_bad_spec_exits_2(self, tmp_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: X\n")
        result = CliRunner().invoke(app, ["policy", str(bad)])
        assert result.exit_code == 2 and result.stdout == ""

    def test_sandbox_refuses_an_unreadable_policy_file(self, tmp_path):
        bad = tmp_path / "p.json"
        bad.write_text('{"Version": "2", "Statement": []}')
        result = CliRunner().invoke(app, ["sandbox", "--port", "0", "--ram-policy", str(bad)])
        assert result.exit_code == 2
