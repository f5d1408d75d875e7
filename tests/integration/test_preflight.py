"""Preflight against the sandbox: the default world passes; each bad world fails the right check, with its
fix, and the sandbox receives no write call."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from acrvpc.cloud import clients as cloud
from acrvpc.domain.outcomes import PreflightOutcome
from acrvpc.domain.spec import parse_spec
from acrvpc.sandbox import SandboxServer, load_scenario
from tasks.preflight import CHECK_IDS, evaluate, observe, run_preflight

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sandbox.yaml"
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):
    """Start a sandbox from the default scenario after ``edit`` changes it; clients go to it."""
    servers: list[SandboxServer] = []

    def start(edit: Edit | None = None) -> SandboxServer:
        scenario = load_scenario()
        if edit is not None:
            edit(scenario)
        server = SandboxServer(scenario).start()
        servers.append(server)
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", server.url)
        return server

    yield start
    for server in servers:
        server.stop()


def make_spec(edit: Edit | None = None):
    data = yaml.safe_load(EXAMPLE.read_text())
    if edit is not None:
        edit(data)
    return parse_spec(data, "test spec")


def run(spec, *, gitlab: bool = True) -> PreflightOutcome:
    return run_preflight(
        cloud.cloud_clients(spec), spec, gitlab=functools.partial(cloud.gitlab_for, spec) if gitlab else None
    )


def check(outcome: PreflightOutcome, check_id: str):
    return next(c for c in outcome.checks if c.id == check_id)


def writes(server: SandboxServer) -> list[dict[str, Any]]:
    return [c for c in server.world.calls.list() if c["writes"]]


# -- scenario and spec edits -----------------------------------------------------------------------
def vswitch(s: dict, vsw_id: str = "vsw-bp1build000000001") -> dict:
    return next(v for v in s["vpc"]["vpcs"][0]["vswitches"] if v["vswitch_id"] == vsw_id)


def gitlab_group(s: dict) -> dict:
    return next(g for g in s["ecs"]["security_groups"] if g["security_group_id"] == "sg-bp1gitlab00000001")


def reverse_rule(s: dict) -> dict:
    return next(r for r in gitlab_group(s)["rules"] if r["source_cidr_ip"] == "100.104.0.0/16")


def drop_reverse_rule(s: dict) -> None:
    gitlab_group(s)["rules"].remove(reverse_rule(s))


def second_group_that_drops(s: dict) -> None:
    s["ecs"]["security_groups"].append(
        {
            "security_group_id": "sg-bp1harden00000001",
            "name": "hardening",
            "vpc_id": "vpc-bp1sandbox00000001",
            "rules": [
                {
                    "direction": "ingress",
                    "policy": "Drop",
                    "priority": 1,
                    "ip_protocol": "ALL",
                    "port_range": "-1/-1",
                    "source_cidr_ip": "100.64.0.0/10",
                }
            ],
        }
    )
    s["ecs"]["instances"][0]["security_group_ids"].append("sg-bp1harden00000001")


def datacenter_spec(d: dict) -> None:
    d["network"].update({"datacenter_cidrs": ["10.20.0.0/16"], "vbr_id": "vbr-bp1idc000000000001"})
    d["gitlab"].update({"access": "datacenter", "private_ip": "10.20.1.5", "endpoint": "http://10.20.1.5"})


def vbr_routes(s: dict) -> list[dict]:
    return s["vpc"]["vbrs"][0]["routes"]


def without_return_route(s: dict) -> None:
    s["vpc"]["vbrs"][0]["routes"] = [r for r in vbr_routes(s) if r["destination"] != "100.104.0.0/16"]


def return_route_to_idc(s: dict) -> None:
    route = next(r for r in vbr_routes(s) if r["destination"] == "100.104.0.0/16")
    route.update({"next_hop_type": "PhysicalConnection", "next_hop_id": "pc-bp1idc000000000001"})


def bound_with_oversea_build(s: dict) -> None:
    s["cr"]["instances"][0]["repositories"].append(
        {
            "namespace": "apps",
            "name": "billing-api",
            "source": {"type": "GITLAB", "namespace": "platform", "name": "billing-api", "oversea_build": True},
        }
    )


def other_vpc(s: dict) -> None:
    s["vpc"]["vpcs"].append(
        {
            "vpc_id": "vpc-bp1other000000001",
            "cidr": "10.30.0.0/16",
            "vswitches": [{"vswitch_id": "vsw-bp1other00000001", "zone_id": "cn-hangzhou-h", "cidr": "10.30.1.0/24"}],
        }
    )


def setter(path: str, value: Any) -> Edit:
    """An edit that sets ``a.b.c`` (list indexes as numbers) to ``value``."""

    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = copy.deepcopy(value)

    return edit


def token(value: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setenv("ACRVPC_GITLAB_TOKEN", value)


@dataclass
class BadInput:
    name: str
    check_id: str
    fix_mentions: str
    scenario: Edit | None = None
    spec: Edit | None = None
    env: Callable[[pytest.MonkeyPatch], None] | None = None
    detail_mentions: str = ""


BAD_INPUTS = [
    BadInput(
        "vswitch in a zone without VPC mode",
        "zone.vpc_mode",
        "cn-hangzhou-h",
        scenario=lambda s: vswitch(s).update(zone_id="cn-hangzhou-b"),
        detail_mentions="cn-hangzhou-b",
    ),
    BadInput(
        "data-center CIDR is a supernet of the block",
        "cidr.datacenter_overlap",
        "renumber",
        spec=setter("network.datacenter_cidrs", ["100.64.0.0/10"]),
        detail_mentions="on 100.104.0.0/16",
    ),
    BadInput(
        "data-center CIDR partly inside the block",
        "cidr.datacenter_overlap",
        "100.104.0.0/16",
        spec=setter("network.datacenter_cidrs", ["100.104.8.0/22"]),
        detail_mentions="on 100.104.8.0/22",
    ),
    BadInput(
        "VPC secondary CIDR overlaps the block",
        "cidr.vpc_overlap",
        "secondary",
        scenario=setter("vpc.vpcs.0.secondary_cidrs", ["100.104.0.0/20"]),
        detail_mentions="100.104.0.0/20",
    ),
    BadInput(
        "GitLab group lacks the 100.104.0.0/16 rule",
        "gitlab.sg_ingress",
        "AuthorizeSecurityGroup",
        scenario=drop_reverse_rule,
        detail_mentions="no ingress rule admits",
    ),
    BadInput(
        "GitLab group admits only a /24 of the block",
        "gitlab.sg_ingress",
        "--Permissions.1.SourceCidrIp 100.104.0.0/16",
        scenario=lambda s: reverse_rule(s).update(source_cidr_ip="100.104.0.0/24"),
        detail_mentions="only 100.104.0.0/24",
    ),
    BadInput(
        "GitLab group admits another port",
        "gitlab.sg_ingress",
        "--Permissions.1.PortRange 80/80",
        scenario=lambda s: reverse_rule(s).update(port_range="443/443"),
    ),
    BadInput(
        "a priority-1 drop rule beats the accept",
        "gitlab.sg_ingress",
        "RevokeSecurityGroup",
        scenario=lambda s: gitlab_group(s)["rules"].append(
            {
                "direction": "ingress",
                "policy": "Drop",
                "priority": 1,
                "ip_protocol": "TCP",
                "port_range": "80/80",
                "source_cidr_ip": "100.104.0.0/16",
            }
        ),
    ),
    BadInput(
        "another group of the instance drops the block",
        "gitlab.sg_ingress",
        "sg-bp1harden00000001",
        scenario=second_group_that_drops,
        detail_mentions="sg-bp1harden00000001",
    ),
    BadInput(
        "security_group_id is not a group of the GitLab ECS",
        "gitlab.sg_ingress",
        "sg-bp1gitlab00000001",
        spec=setter("gitlab.security_group_id", "sg-bp1unrelated000001"),
    ),
    BadInput(
        "no ECS instance has GitLab's IP",
        "gitlab.sg_ingress",
        "gitlab.access: slb",
        spec=setter("gitlab.private_ip", "192.168.1.99"),
    ),
    BadInput(
        "GitLab IP outside the VPC and data center",
        "gitlab.ip_in_network",
        "gitlab.private_ip",
        spec=setter("gitlab.private_ip", "172.16.0.5"),
    ),
    BadInput(
        "instance STOPPED",
        "instance.running",
        "RUNNING",
        scenario=setter("cr.instances.0.status", "STOPPED"),
        detail_mentions="STOPPED",
    ),
    BadInput(
        "instance is not Enterprise Edition",
        "instance.edition",
        "Enterprise",
        scenario=setter("cr.instances.0.specification", "Basic"),
    ),
    BadInput(
        "instance does not exist",
        "instance.exists",
        "instance_id",
        spec=setter("instance_id", "cri-doesnotexist00001"),
        detail_mentions="INSTANCE_NOT_EXIST",
    ),
    BadInput(
        "VPC does not exist",
        "vpc.exists",
        "network.vpc_id",
        spec=setter("network.vpc_id", "vpc-bp1doesnotexist01"),
        detail_mentions="InvalidVpcID.NotFound",
    ),
    BadInput(
        "vSwitch does not exist",
        "vswitch.exists",
        "network.vswitch_id",
        spec=setter("network.vswitch_id", "vsw-bp1doesnotexist01"),
        detail_mentions="InvalidVswitchID.NotFound",
    ),
    BadInput(
        "vSwitch of another VPC",
        "vswitch.in_vpc",
        "network.vswitch_id",
        scenario=other_vpc,
        spec=setter("network.vswitch_id", "vsw-bp1other00000001"),
    ),
    BadInput(
        "vSwitch has no free IP",
        "vswitch.free_ips",
        "another vSwitch",
        scenario=lambda s: vswitch(s).update(available_ips=0),
    ),
    BadInput(
        "data center without the VBR return route",
        "vbr.return_route",
        "CreateRouteEntry",
        scenario=without_return_route,
        spec=datacenter_spec,
        detail_mentions="no route covering",
    ),
    BadInput(
        "VBR return route points at the data center",
        "vbr.return_route",
        "RouterInterface",
        scenario=return_route_to_idc,
        spec=datacenter_spec,
        detail_mentions="not back to the VPC",
    ),
    BadInput(
        "VBR does not exist",
        "vbr.return_route",
        "network.vbr_id",
        spec=lambda d: (datacenter_spec(d), d["network"].update(vbr_id="vbr-bp1doesnotexist01")),
    ),
    BadInput(
        "VBR is not active",
        "vbr.return_route",
        "activate",
        scenario=setter("vpc.vbrs.0.status", "terminated"),
        spec=datacenter_spec,
    ),
    BadInput(
        "bound repository builds outside mainland China",
        "build.oversea_off",
        "--OverseaBuild false",
        scenario=bound_with_oversea_build,
        detail_mentions="apps/billing-api",
    ),
    BadInput(
        "allowed IP inside the reverse-access block",
        "allowed_ips.valid",
        "link.allowed_ips",
        spec=setter("link.allowed_ips", ["100.104.1.1"]),
    ),
    BadInput("expired GitLab token", "gitlab.token", "gitlab.token_block", env=token("glpat-sandbox-expired-000001")),
    BadInput("revoked GitLab token", "gitlab.token", "gitlab.token_block", env=token("glpat-sandbox-revoked-000001")),
    BadInput(
        "token of another user",
        "gitlab.token",
        "gitlab.username",
        env=token("glpat-sandbox-alice-0000001"),
        detail_mentions="alice",
    ),
    BadInput("token without the api scope", "gitlab.token", "api", env=token("glpat-sandbox-read-user-00001")),
    BadInput(
        "GitLab project does not exist",
        "gitlab.projects",
        "gitlab_project",
        spec=setter("repositories.0.gitlab_project", "platform/does-not-exist"),
    ),
]


class TestRunPreflight:
    def test_default_world_passes_with_reads_only(self, world):
        # given
        server = world()
        spec = make_spec()
        # when
        outcome = run(spec)
        # then
        assert outcome.passed, [c for c in outcome.failures]
        assert [c.id for c in outcome.checks] == list(CHECK_IDS)
        assert writes(server) == []
        actions = {c["action"] for c in server.world.calls.list()}
        assert {
            "GetInstance",
            "DescribeVpcAttribute",
            "DescribeVSwitchAttributes",
            "DescribeInstances",
            "DescribeSecurityGroupAttribute",
            "GetRepository",
            "GET /user",
        } <= actions

    def test_datacenter_world_passes_with_the_vbr_return_route(self, world):
        server = world()
        outcome = run(make_spec(datacenter_spec))
        assert outcome.passed, outcome.failures
        vbr = check(outcome, "vbr.return_route")
        assert vbr.result == "pass" and "cannot be checked from the API" in vbr.detail
        assert check(outcome, "gitlab.sg_ingress").result == "skip"
        assert writes(server) == []

    def test_slb_skips_the_security_group_with_the_reason(self, world):
        server = world()
        outcome = run(make_spec(setter("gitlab.access", "slb")), gitlab=False)
        sg = check(outcome, "gitlab.sg_ingress")
        assert sg.result == "skip" and "SLB" in sg.detail
        assert not any(c["product"] == "ecs" for c in server.world.calls.list())
        assert check(outcome, "gitlab.token").result == "skip"

    def test_bound_repository_with_oversea_build_off_passes(self, world):
        def bound(s: dict) -> None:
            bound_with_oversea_build(s)
            s["cr"]["instances"][0]["repositories"][-1]["source"]["oversea_build"] = False

        world(bound)
        outcome = run(make_spec(), gitlab=False)
        oversea = check(outcome, "build.oversea_off")
        assert oversea.result == "pass" and "apps/billing-api: bound, OverseaBuild=false" in oversea.detail

    def test_a_failing_read_does_not_abort_the_others(self, world):
        # given the VPC read is throttled
        server = world()
        server.world.faults.fail_next("DescribeVpcAttribute", 1, "Throttling.User")
        spec = make_spec()
        # when
        obs = observe(cloud.cloud_clients(spec), spec)
        outcome = evaluate(spec, obs)
        # then
        vpc = check(outcome, "vpc.exists")
        assert vpc.result == "fail" and "Throttling.User" in vpc.detail and "transient" in vpc.fix
        assert check(outcome, "instance.running").result == "pass"
        assert check(outcome, "gitlab.sg_ingress").result == "pass"
        assert obs.transient_check_ids() == {"vpc.exists"}


def retired_region(s: dict) -> None:
    """The sandbox world moved to ap-southeast-2, a region the zone table marks retired."""
    s["region"] = "ap-southeast-2"
    s["cr"]["instances"][0]["region"] = "ap-southeast-2"
    for vsw in s["vpc"]["vpcs"][0]["vswitches"]:
        vsw["zone_id"] = "ap-southeast-2a"


class TestMessages:
    """The failing checks' texts name the field and a fix that can work (issue 14)."""

    def test_retired_region_says_so_and_that_the_build_needs_a_supported_region(self, world):
        # given an instance, VPC and vSwitch in a retired region
        server = world(retired_region)
        # when preflight runs
        zone = check(run(make_spec(setter("region", "ap-southeast-2")), gitlab=False), "zone.vpc_mode")
        # then the fix says the region is retired and names supported regions, and the spec fields to change
        assert zone.result == "fail" and "retired" in zone.detail
        assert "region ap-southeast-2 is retired" in zone.fix
        assert "a VPC in a supported region (cn-beijing, cn-hangzhou" in zone.fix
        assert "set region, instance_id, network.vpc_id and network.vswitch_id" in zone.fix
        assert "create one in" not in zone.fix and "zone table" not in zone.fix  # no vSwitch in that VPC can work
        assert writes(server) == []

    def test_unsupported_zone_of_a_supported_region_names_the_zones(self, world):
        world(lambda s: vswitch(s).update(zone_id="cn-hangzhou-b"))
        zone = check(run(make_spec(), gitlab=False), "zone.vpc_mode")
        assert zone.fix.startswith("use a vSwitch in one of the zones cn-hangzhou-e, ")
        assert "(create one in vpc-bp1sandbox00000001 if needed) and set network.vswitch_id" in zone.fix

    def test_unknown_instance_says_failed_once_and_names_the_region_to_look_in(self, world):
        world()
        found = check(run(make_spec(setter("instance_id", "cri-doesnotexist00001")), gitlab=False), "instance.exists")
        assert found.result == "fail"
        assert found.detail == "GetInstance cri-doesnotexist00001 in cn-hangzhou failed: [INSTANCE_NOT_EXIST]"
        assert found.detail.count("failed") == 1
        assert "no instance cri-doesnotexist00001 in region cn-hangzhou" in found.fix
        assert "check instance_id" in found.fix and "region" in found.fix.split("check instance_id")[1]
        assert "Container Registry console, region cn-hangzhou, Instances" in found.fix


class TestBadInputs:
    @pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
    def test_fails_the_right_check_with_its_fix_and_no_write(self, world, monkeypatch, case: BadInput):
        # given
        server = world(case.scenario)
        if case.env is not None:
            case.env(monkeypatch)
        spec = make_spec(case.spec)
        # when
        outcome = run(spec)
        # then
        failed = check(outcome, case.check_id)
        assert failed.result == "fail", failed
        assert case.fix_mentions in failed.fix
        assert case.detail_mentions in failed.detail
        assert not outcome.passed
        assert writes(server) == []


@pytest.mark.e2e
class TestPreflightTask:
    """The Prefect task: table artifact, and PREFLIGHT_FAILED before any write."""

    def _artifact_rows(self, key: str) -> list[dict[str, Any]]:
        import json

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with get_client(sync_client=True) as client:
            found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
        data = found[0].data
        return json.loads(data) if isinstance(data, str) else data

    def test_passing_world_publishes_the_table(self, prefect_harness, world):
        from prefect import flow

        from tasks.preflight import preflight

        server = world()
        spec = make_spec()

        @flow
        def only_preflight():
            return preflight(spec)

        outcome = only_preflight()
        assert outcome.passed
        rows = self._artifact_rows("preflight-demo-build")
        assert [r["check"] for r in rows] == list(CHECK_IDS)
        assert set(rows[0]) == {"check", "result", "detail", "fix"}
        assert writes(server) == []

    def test_failing_check_raises_preflight_failed_naming_the_check_and_fix(self, prefect_harness, world):
        from prefect import flow

        from tasks.preflight import preflight

        server = world(lambda s: vswitch(s).update(zone_id="cn-hangzhou-b"))
        spec = make_spec()

        @flow
        def only_preflight():
            return preflight(spec)

        state = only_preflight(return_state=True)
        assert state.is_failed()
        error = state.result(raise_on_failure=False)
        assert error.code == "PREFLIGHT_FAILED"
        assert "zone.vpc_mode" in str(error) and "cn-hangzhou-h" in str(error)
        assert error.retryable is False
        assert writes(server) == []
