"""Plan mode: each stage's ``plan=True`` records the writes a real run makes and makes none; ``plan_run``
and ``acrvpc plan`` show them (resource, action, why), and nothing for a converged spec.

"The same changes as a real run" is checked against a real run on a second, identically seeded sandbox;
the ids a run mints (``sg-bp1sbx...``, the ENI's private IP) and plan mode's ``<new ...>`` placeholders
are compared as ``<id>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alibabacloud_ecs20140526 import models as ecs_models
from typer.testing import CliRunner

from acrvpc.cli.app import app
from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.spec import TAG_KEY, Spec, load_spec
from acrvpc.sandbox import SandboxServer, load_scenario
from tasks.binding import bind_repository
from tasks.eni import ensure_network_interface
from tasks.link import ensure_security_group
from tasks.plan import plan_run, planned_write
from tests.conftest import EXAMPLE_SPEC

Edit = Callable[[dict[str, Any]], None]
_MINTED_ID = re.compile(r"\b[a-z]+(?:-[a-z]+)*-bp1sbx[0-9a-f]{13}\b")
_PLACEHOLDER = re.compile(r"<[^>]+>")
_IP_IN_PARENS = re.compile(r"\((?:\d{1,3}\.){3}\d{1,3}\)")
INSTANCE = "cri-sandbox0demo0001"
GITLAB_SG = "sg-bp1gitlab00000001"


def normalized(changes: list[str]) -> list[str]:
    return [_IP_IN_PARENS.sub("(<id>)", _PLACEHOLDER.sub("<id>", _MINTED_ID.sub("<id>", line))) for line in changes]


def calls(server, since: int = 0) -> list[dict[str, Any]]:
    return requests.get(f"{server.url}/_sandbox/calls", params={"since": since}, timeout=5).json()["calls"]


def writes(server, since: int = 0) -> list[str]:
    return [c["action"] for c in calls(server, since) if c["writes"]]


def last_seq(server) -> int:
    log = calls(server)
    return log[-1]["seq"] if log else 0


@pytest.fixture
def worlds(monkeypatch: pytest.MonkeyPatch):
    """Start sandboxes from the default scenario (after ``edit``); returns (server, clients) for each."""
    started: list[SandboxServer] = []

    def start(spec: Spec, edit: Edit | None = None):
        scenario = load_scenario()
        if edit is not None:
            edit(scenario)
        server = SandboxServer(scenario).start()
        started.append(server)
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", server.url)
        return server, cloud.cloud_clients(spec)

    yield start
    for server in started:
        server.stop()


def advancing(server) -> Callable[[float], None]:
    return server.world.clock.advance


def converge(server, clients, spec: Spec) -> None:
    """A real run of the writing stages (builds aside)."""
    link = ensure_security_group(clients.ecs, spec)
    ensure_network_interface(clients.ecs, spec, link.security_group_id, sleep=advancing(server))
    for repo in spec.repositories:
        bind_repository(clients.cr, spec, repo)


# -- drift built through the real SDK before a run ---------------------------------------------------------
def stray_group(clients, spec: Spec) -> str:
    """A tagged link group with the default inner policy, a stray egress rule and an inbound accept."""
    key, value = spec.tag
    group = clients.ecs.create_security_group(
        ecs_models.CreateSecurityGroupRequest(
            region_id=spec.region,
            vpc_id=spec.network.vpc_id,
            tag=[ecs_models.CreateSecurityGroupRequestTag(key=key, value=value)],
        )
    ).body.security_group_id
    clients.ecs.authorize_security_group_egress(
        ecs_models.AuthorizeSecurityGroupEgressRequest(
            region_id=spec.region,
            security_group_id=group,
            permissions=[
                ecs_models.AuthorizeSecurityGroupEgressRequestPermissions(
                    policy="accept", priority="1", ip_protocol="TCP", port_range="80/80", dest_cidr_ip="192.168.1.20/32"
                ),
                ecs_models.AuthorizeSecurityGroupEgressRequestPermissions(
                    policy="accept", priority="1", ip_protocol="TCP", port_range="22/22", dest_cidr_ip="10.0.0.0/8"
                ),
            ],
        )
    )
    clients.ecs.authorize_security_group(
        ecs_models.AuthorizeSecurityGroupRequest(
            region_id=spec.region,
            security_group_id=group,
            permissions=[
                ecs_models.AuthorizeSecurityGroupRequestPermissions(
                    policy="accept", priority="1", ip_protocol="TCP", port_range="22/22", source_cidr_ip="0.0.0.0/0"
                )
            ],
        )
    )
    return group


def tagged_eni_in_gitlab_group(clients, spec: Spec) -> str:
    key, value = spec.tag
    return clients.ecs.create_network_interface(
        ecs_models.CreateNetworkInterfaceRequest(
            region_id=spec.region,
            v_switch_id=spec.network.vswitch_id,
            security_group_id=GITLAB_SG,
            tag=[ecs_models.CreateNetworkInterfaceRequestTag(key=key, value=value)],
        )
    ).body.network_interface_id


def bound_with_oversea_build(s: dict) -> None:
    s["cr"]["instances"][0]["repositories"].append(
        {
            "namespace": "apps",
            "name": "billing-api",
            "source": {"type": "GITLAB", "namespace": "platform", "name": "billing-api", "oversea_build": True},
        }
    )


def plan_and_run(
    worlds, spec: Spec, plan: Callable, run: Callable, *, edit: Edit | None = None, prepare: Callable | None = None
) -> tuple[Any, Any, list[str]]:
    """Plan on one fresh world, run for real on a second identical one; the planning world's writes."""
    planning, clients = worlds(spec, edit)
    state = prepare(planning, clients) if prepare else None
    since = last_seq(planning)
    planned = plan(planning, clients, state)
    planned_writes = writes(planning, since)
    running, clients = worlds(spec, edit)
    state = prepare(running, clients) if prepare else None
    real = run(running, clients, state)
    return planned, real, planned_writes


# -- stage functions in plan mode -------------------------------------------------------------------------
class TestEnsureSecurityGroupPlan:
    def test_a_fresh_world_plans_what_a_run_makes_and_writes_nothing(self, worlds, spec):
        planned, real, made = plan_and_run(
            worlds,
            spec,
            lambda s, c, _: ensure_security_group(c.ecs, spec, plan=True),
            lambda s, c, _: ensure_security_group(c.ecs, spec),
        )
        assert made == []
        assert planned.changes[0] == "CreateSecurityGroup <new security group>"
        assert normalized(planned.changes) == normalized(real.changes)
        assert len(real.changes) == 5

    def test_drift_plans_the_same_repairs_as_a_run(self, worlds, spec):
        planned, real, made = plan_and_run(
            worlds,
            spec,
            lambda s, c, _: ensure_security_group(c.ecs, spec, plan=True),
            lambda s, c, _: ensure_security_group(c.ecs, spec),
            prepare=lambda s, c: stray_group(c, spec),
        )
        assert made == []
        actions = [line.split()[0] for line in planned.changes]
        assert actions == [
            "ModifySecurityGroupPolicy",
            "AuthorizeSecurityGroupEgress",
            "AuthorizeSecurityGroupEgress",
            "RevokeSecurityGroupEgress",
            "RevokeSecurityGroup",
        ]
        assert normalized(planned.changes) == normalized(real.changes)

    def test_a_converged_group_plans_nothing(self, sandbox, spec):
        ecs = cloud.cloud_clients(spec).ecs
        group = ensure_security_group(ecs, spec).security_group_id
        since = last_seq(sandbox)
        planned = ensure_security_group(ecs, spec, plan=True)
        assert planned.changes == [] and planned.security_group_id == group
        assert writes(sandbox, since) == []


class TestEnsureNetworkInterfacePlan:
    def test_a_missing_eni_plans_create_and_permission_without_waiting(self, worlds, spec):
        def plan(server, clients, _):
            return ensure_network_interface(
                clients.ecs,
                spec,
                "<new security group>",
                plan=True,
                sleep=lambda s: pytest.fail("plan mode must not wait"),
            )

        def run(server, clients, _):
            group = ensure_security_group(clients.ecs, spec).security_group_id
            return ensure_network_interface(clients.ecs, spec, group, sleep=advancing(server))

        planned, real, made = plan_and_run(worlds, spec, plan, run)
        assert made == []
        assert [line.split()[0] for line in planned.changes] == [
            "CreateNetworkInterface",
            "CreateNetworkInterfacePermission",
        ]
        assert normalized(planned.changes) == normalized(real.changes)
        assert planned.status == "planned" and any("InUse" in n for n in planned.notes)

    def test_an_eni_in_the_wrong_group_plans_the_move_and_the_grant(self, worlds, spec):
        def prepare(server, clients):
            return ensure_security_group(clients.ecs, spec).security_group_id, tagged_eni_in_gitlab_group(clients, spec)

        planned, real, made = plan_and_run(
            worlds,
            spec,
            lambda s, c, state: ensure_network_interface(c.ecs, spec, state[0], plan=True),
            lambda s, c, state: ensure_network_interface(c.ecs, spec, state[0], sleep=advancing(s)),
            prepare=prepare,
        )
        assert made == []
        assert [line.split()[0] for line in planned.changes] == [
            "ModifyNetworkInterfaceAttribute",
            "CreateNetworkInterfacePermission",
        ]
        assert normalized(planned.changes) == normalized(real.changes)

    def test_a_converged_eni_plans_nothing(self, sandbox, spec):
        ecs = cloud.cloud_clients(spec).ecs
        group = ensure_security_group(ecs, spec).security_group_id
        real = ensure_network_interface(ecs, spec, group, sleep=advancing(sandbox))
        since = last_seq(sandbox)
        planned = ensure_network_interface(ecs, spec, group, plan=True)
        assert planned.changes == [] and planned.network_interface_id == real.network_interface_id
        assert planned.status == "InUse" and writes(sandbox, since) == []


class TestBindRepositoryPlan:
    def test_a_missing_namespace_skips_the_reads_below_it(self, worlds, spec):
        repo = spec.repositories[0]
        planning, clients = worlds(spec)
        planned = bind_repository(clients.cr, spec, repo, plan=True)
        assert writes(planning) == []
        assert [c["action"] for c in calls(planning)] == ["GetNamespace"]
        _, clients = worlds(spec)
        real = bind_repository(clients.cr, spec, repo)
        assert normalized(planned.changes) == normalized(real.changes)
        assert [line.split()[0] for line in planned.changes] == [
            "CreateNamespace",
            "CreateRepository",
            "CreateRepoSourceCodeRepo",
            "CreateRepoBuildRule",
        ]
        assert planned.repo_id == "<new repository>" and planned.rules[0].build_rule_id == "<new build rule>"

    def test_a_missing_repository_in_an_existing_namespace(self, worlds, spec):
        repo = spec.repositories[1]

        def prepare(server, clients):
            bind_repository(clients.cr, spec, spec.repositories[0])

        planned, real, made = plan_and_run(
            worlds,
            spec,
            lambda s, c, _: bind_repository(c.cr, spec, repo, plan=True),
            lambda s, c, _: bind_repository(c.cr, spec, repo),
            prepare=prepare,
        )
        assert made == []
        assert normalized(planned.changes) == normalized(real.changes)
        assert [line.split()[0] for line in planned.changes] == [
            "CreateRepository",
            "CreateRepoSourceCodeRepo",
            "CreateRepoBuildRule",
            "CreateRepoBuildRule",
        ]

    def test_a_binding_that_builds_abroad_plans_the_update(self, worlds, spec):
        repo = spec.repositories[0]
        planned, real, made = plan_and_run(
            worlds,
            spec,
            lambda s, c, _: bind_repository(c.cr, spec, repo, plan=True),
            lambda s, c, _: bind_repository(c.cr, spec, repo),
            edit=bound_with_oversea_build,
        )
        assert made == []
        assert normalized(planned.changes) == normalized(real.changes)
        assert any(
            line.startswith("UpdateRepoSourceCodeRepo apps/billing-api (OverseaBuild true != false")
            for line in planned.changes
        )

    def test_a_converged_repository_plans_nothing(self, sandbox, spec):
        cr = cloud.cloud_clients(spec).cr
        real = bind_repository(cr, spec, spec.repositories[1])
        since = last_seq(sandbox)
        planned = bind_repository(cr, spec, spec.repositories[1], plan=True)
        assert planned.changes == [] and planned.repo_id == real.repo_id
        assert [r.build_rule_id for r in planned.rules] == [r.build_rule_id for r in real.rules]
        assert writes(sandbox, since) == []


# -- plan_run ----------------------------------------------------------------------------------------------
class TestPlanRun:
    def test_a_fresh_world_lists_every_write_once_and_makes_none(self, sandbox, spec):
        # when
        plan = plan_run(cloud.cloud_clients(spec), lambda: cloud.gitlab_for(spec), spec)
        # then
        assert writes(sandbox) == []
        actions = [(w.stage, w.action) for w in plan.writes]
        assert actions.count(("binding", "CreateNamespace")) == 1  # two repositories, one namespace
        assert ("link", "CreateSecurityGroup") in actions and ("eni", "CreateNetworkInterface") in actions
        assert len(plan.writes) == 15
        assert plan.writes[0].why == f"no security group in {spec.network.vpc_id} carries the tag {TAG_KEY}=demo-build"
        assert any(n.startswith("a run would start 2 build(s)") for n in plan.notes)

    def test_a_converged_world_plans_no_write(self, sandbox, spec):
        clients = cloud.cloud_clients(spec)
        converge(sandbox, clients, spec)
        since = last_seq(sandbox)
        plan = plan_run(clients, None, spec)
        assert plan.writes == [] and plan.converged
        assert writes(sandbox, since) == []

    def test_a_failing_preflight_stops_the_plan(self, sandbox):
        # given the instance is stopped
        sandbox.world.cr.instances[INSTANCE].status = "STOPPED"
        spec = load_spec(EXAMPLE_SPEC)
        # when
        with pytest.raises(PipelineError) as caught:
            plan_run(cloud.cloud_clients(spec), None, spec)
        # then
        assert caught.value.code == "PREFLIGHT_FAILED" and "instance.running" in str(caught.value)
        assert not any(c["action"] == "DescribeSecurityGroups" for c in calls(sandbox))
        assert writes(sandbox) == []


class TestPlannedWrite:
    def test_a_change_line_becomes_resource_action_and_why(self, spec):
        w = planned_write("binding", "CreateRepoBuildRule apps/web GIT_TAG:v* -> release <new build rule>", spec)
        assert (w.stage, w.action, w.resource, w.why) == (
            "binding",
            "CreateRepoBuildRule",
            "apps/web",
            "no build rule matches GIT_TAG:v* -> release",
        )

    def test_a_placeholder_resource_is_one_token(self, spec):
        w = planned_write("link", "ModifySecurityGroupPolicy <new security group> InnerAccessPolicy=Drop", spec)
        assert (w.action, w.resource) == ("ModifySecurityGroupPolicy", "<new security group>")


# -- acrvpc plan -------------------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


class TestPlanCommand:
    def test_a_fresh_world_prints_the_writes_and_makes_zero_write_calls(self, sandbox):
        # when
        result = invoke("plan", str(EXAMPLE_SPEC), "--json")
        # then
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert set(payload) == {"spec", "writes", "notes"}
        assert all(set(w) == {"stage", "resource", "action", "why"} for w in payload["writes"])
        assert {w["action"] for w in payload["writes"]} == {
            "CreateSecurityGroup",
            "ModifySecurityGroupPolicy",
            "AuthorizeSecurityGroupEgress",
            "CreateNetworkInterface",
            "CreateNetworkInterfacePermission",
            "CreateNamespace",
            "CreateRepository",
            "CreateRepoSourceCodeRepo",
            "CreateRepoBuildRule",
        }
        assert writes(sandbox) == []

    def test_the_table_names_resource_action_and_why(self, sandbox):
        result = invoke("plan", str(EXAMPLE_SPEC))
        assert result.exit_code == 0, result.output
        assert "CreateSecurityGroup" in result.stdout and "apps/billing-api" in result.stdout
        assert "15 write(s) planned; nothing was changed" in result.stdout
        assert writes(sandbox) == []

    def test_a_converged_world_prints_an_empty_plan(self, sandbox, spec):
        converge(sandbox, cloud.cloud_clients(spec), spec)
        since = last_seq(sandbox)
        result = invoke("plan", str(EXAMPLE_SPEC), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["writes"] == []
        human = invoke("plan", str(EXAMPLE_SPEC))
        assert "is converged: a run would make no write" in human.stdout
        assert writes(sandbox, since) == []

    def test_a_failing_check_exits_1_with_its_code(self, sandbox, tmp_path):
        data = yaml.safe_load(EXAMPLE_SPEC.read_text())
        data["network"]["datacenter_cidrs"] = ["100.104.8.0/22"]
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(data))
        result = invoke("plan", str(path), "--json")
        assert result.exit_code == 1
        error = json.loads(result.stdout)["error"]
        assert error["code"] == "PREFLIGHT_FAILED" and "cidr.datacenter_overlap" in error["message"]
        assert writes(sandbox) == []

    def test_an_invalid_spec_exits_2(self, sandbox, tmp_path):
        path = Path(tmp_path / "spec.yaml")
        path.write_text("name: x\nregion: cn-hangzhou\n")
        result = invoke("plan", str(path))
        assert result.exit_code == 2 and result.stderr
        assert calls(sandbox) == []
