"""Stage "eni": the build ENI, its InstanceAttach permission and the wait for InUse, against the sandbox."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.outcomes import EniOutcome
from acrvpc.domain.spec import TAG_KEY, parse_spec
from tasks.eni import eni, ensure_network_interface
from tasks.link import ensure_security_group

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "examples" / "sandbox.yaml"
REGION = "cn-hangzhou"
BUILD_VSW = "vsw-bp1build000000001"
GITLAB_SG = "sg-bp1gitlab00000001"


@pytest.fixture
def group(ecs, spec) -> str:
    return ensure_security_group(ecs, spec).security_group_id


def spec_with(**changes: Any):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    for section, values in changes.items():
        data[section].update(values)
    return parse_spec(data)


def calls(sandbox, since: int = 0) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", params={"since": since}, timeout=5).json()["calls"]


def last_seq(sandbox) -> int:
    log = calls(sandbox)
    return log[-1]["seq"] if log else 0


def writes(sandbox, since: int = 0) -> list[str]:
    return [c["action"] for c in calls(sandbox, since) if c["writes"]]


def tagged_eni(ecs, group: str, name: str) -> str:
    return ecs.create_network_interface(
        m.CreateNetworkInterfaceRequest(
            region_id=REGION,
            v_switch_id=BUILD_VSW,
            security_group_id=group,
            tag=[m.CreateNetworkInterfaceRequestTag(key=TAG_KEY, value=name)],
        )
    ).body.network_interface_id


class TestEnsureNetworkInterface:
    def test_first_run_creates_grants_and_waits_until_in_use(self, sandbox, ecs, spec, group, advance):
        out = ensure_network_interface(ecs, spec, group, sleep=advance)
        eni_state = sandbox.world.ecs.enis[out.network_interface_id]
        assert out.status == "InUse"
        assert ipaddress.ip_address(out.private_ip) in ipaddress.ip_network("192.168.2.0/24")
        assert (eni_state.vswitch_id, eni_state.security_group_ids, eni_state.name) == (
            BUILD_VSW,
            [group],
            "acr-vpc-build-demo-build",
        )
        assert eni_state.tags == {TAG_KEY: "demo-build"}
        (perm,) = [p for p in sandbox.world.ecs.permissions.values() if p.eni_id == out.network_interface_id]
        assert (perm.account_id, perm.permission) == (spec.link.build_service_account_id, "InstanceAttach")
        assert [c.split()[0] for c in out.changes] == ["CreateNetworkInterface", "CreateNetworkInterfacePermission"]
        assert out.resources == {"eni": out.network_interface_id}

    def test_polls_with_a_backoff_from_half_a_second(self, sandbox, ecs, spec, group, advance):
        sandbox.world.ecs.attach_seconds = 6
        ensure_network_interface(ecs, spec, group, sleep=advance)
        assert advance.steps == [0.5, 1.0, 2.0, 4.0]

    def test_second_run_makes_zero_writes_and_does_not_wait(self, sandbox, ecs, spec, group, advance):
        first = ensure_network_interface(ecs, spec, group, sleep=advance)
        since, slept = last_seq(sandbox), len(advance.steps)
        again = ensure_network_interface(ecs, spec, group, sleep=advance)
        assert (again.network_interface_id, again.status, again.changes) == (first.network_interface_id, "InUse", [])
        assert writes(sandbox, since) == []
        assert [c["action"] for c in calls(sandbox, since)] == [
            "DescribeNetworkInterfaces",
            "DescribeNetworkInterfacePermissions",
        ]
        assert len(advance.steps) == slept

    def test_a_drifted_security_group_is_put_back(self, sandbox, ecs, spec, group, advance):
        eni_id = ensure_network_interface(ecs, spec, group, sleep=advance).network_interface_id
        sandbox.world.ecs.enis[eni_id].security_group_ids = [group, GITLAB_SG]
        since = last_seq(sandbox)
        out = ensure_network_interface(ecs, spec, group, sleep=advance)
        assert writes(sandbox, since) == ["ModifyNetworkInterfaceAttribute"]
        assert sandbox.world.ecs.enis[eni_id].security_group_ids == [group]
        assert GITLAB_SG in out.changes[0]

    def test_a_deleted_permission_is_granted_again_and_the_eni_reattached(self, sandbox, ecs, spec, group, advance):
        eni_id = ensure_network_interface(ecs, spec, group, sleep=advance).network_interface_id
        (pid,) = [p.permission_id for p in sandbox.world.ecs.permissions.values() if p.eni_id == eni_id]
        ecs.delete_network_interface_permission(
            m.DeleteNetworkInterfacePermissionRequest(region_id=REGION, network_interface_permission_id=pid)
        )
        out = ensure_network_interface(ecs, spec, group, sleep=advance)
        assert out.status == "InUse"
        assert [c.split()[0] for c in out.changes] == ["CreateNetworkInterfacePermission"]

    def test_two_tagged_enis_are_ambiguous(self, sandbox, ecs, spec, group, advance):
        a, b = tagged_eni(ecs, group, spec.name), tagged_eni(ecs, group, spec.name)
        since = last_seq(sandbox)
        with pytest.raises(PipelineError) as exc:
            ensure_network_interface(ecs, spec, group, sleep=advance)
        assert exc.value.code == "ENI_AMBIGUOUS" and a in str(exc.value) and b in str(exc.value)
        assert writes(sandbox, since) == []

    def test_an_eni_back_to_available_after_attaching_failed(self, sandbox, ecs, spec, group, advance):
        sandbox.world.ecs.attach_fail_zones = {"cn-hangzhou-h"}
        with pytest.raises(PipelineError) as exc:
            ensure_network_interface(ecs, spec, group, sleep=advance)
        assert exc.value.code == "ENI_ATTACH_FAILED" and "zone" in exc.value.fix

    def test_nothing_attaches_for_a_wrong_account_and_the_wait_times_out(self, sandbox, ecs, group, advance):
        wrong = spec_with(link={"build_service_account_id": 1234})
        with pytest.raises(PipelineError) as exc:
            ensure_network_interface(ecs, wrong, group, timeout_s=10, sleep=advance)
        assert exc.value.code == "ENI_ATTACH_TIMEOUT" and "build_service_account_id" in exc.value.fix
        assert advance.steps == [0.5, 1.0, 2.0, 4.0, 2.5]

    def test_a_full_vswitch_fails_with_the_provider_code(self, sandbox, ecs, spec, group, advance):
        sandbox.world.vpc.vswitch(BUILD_VSW).available_ips = 0
        with pytest.raises(PipelineError) as exc:
            ensure_network_interface(ecs, spec, group, sleep=advance)
        assert exc.value.code == "InvalidVSwitchId.IpNotEnough" and BUILD_VSW in str(exc.value)

    def test_a_deleted_link_group_is_named_as_the_links_not_gitlabs(self, sandbox, ecs, spec, group, advance):
        # Given the link's group deleted after the link stage returned it (e.g. by a teardown meanwhile)
        ecs.delete_security_group(m.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=group))
        with pytest.raises(PipelineError) as exc:
            ensure_network_interface(ecs, spec, group, sleep=advance)
        # then the fix is about the link's managed group, not the GitLab ECS's group in the spec
        assert exc.value.code == "InvalidSecurityGroupId.NotFound"
        assert f"{group} is the link's managed security group (tagged {TAG_KEY}={spec.name})" in exc.value.fix
        assert "not gitlab.security_group_id" in exc.value.fix and "start a new run" in exc.value.fix

    def test_waits_in_real_time_under_a_fast_sandbox_clock(self, sandbox, ecs, spec, group):
        requests.post(f"{sandbox.url}/_sandbox/settings", json={"time_scale": 1000}, timeout=5)
        assert ensure_network_interface(ecs, spec, group).status == "InUse"

    def test_with_the_link_builders_reach_gitlab_and_nothing_else(self, sandbox, ecs, spec, group, advance):
        ensure_network_interface(ecs, spec, group, sleep=advance)
        account = spec.link.build_service_account_id
        assert sandbox.world.ecs.reaches(account, spec.gitlab.private_ip, spec.gitlab.port) == (True, "")
        ok, why = sandbox.world.ecs.reaches(account, "10.1.2.3", 443)
        assert not ok and group in why


class TestEniTask:
    def test_builds_its_client_from_the_spec(self, sandbox, spec, group):
        requests.post(f"{sandbox.url}/_sandbox/settings", json={"time_scale": 1000}, timeout=5)
        out = eni.fn(spec, group)
        assert isinstance(out, EniOutcome) and out.network_interface_id in sandbox.world.ecs.enis
