"""Drift: a managed resource changed behind the pipeline's back is reported before it is converged."""

from __future__ import annotations

import pytest
import requests
from alibabacloud_ecs20140526 import models as ecs_models

from tasks.eni import ensure_network_interface
from tasks.link import ensure_security_group


class Recorder:
    """An ``on_drift`` that also notes how many write calls the sandbox had seen when it was called."""

    def __init__(self, sandbox) -> None:
        self.sandbox, self.reports = sandbox, []

    def writes(self) -> int:
        return sum(1 for c in self.sandbox.world.calls.list() if c["writes"])

    def __call__(self, resource_id, differences) -> None:
        self.reports.append((resource_id, differences, self.writes()))


def add_egress(ecs, spec, group_id, cidr="0.0.0.0/0", port="22/22"):
    ecs.authorize_security_group_egress(
        ecs_models.AuthorizeSecurityGroupEgressRequest(
            region_id=spec.region,
            security_group_id=group_id,
            permissions=[
                ecs_models.AuthorizeSecurityGroupEgressRequestPermissions(
                    policy="accept", priority="1", ip_protocol="TCP", port_range=port, dest_cidr_ip=cidr
                )
            ],
        )
    )


class TestSecurityGroupDrift:
    def test_an_egress_rule_added_by_hand_is_reported_before_it_is_revoked(self, sandbox, spec, ecs):
        # given a converged group, then someone opens SSH to anywhere
        group = ensure_security_group(ecs, spec).security_group_id
        add_egress(ecs, spec, group)
        drift = Recorder(sandbox)
        before = drift.writes()
        # when
        outcome = ensure_security_group(ecs, spec, on_drift=drift)
        # then the report came first (no write yet), naming the rule, and then the rule was revoked
        [(resource, differences, writes_at_report)] = drift.reports
        assert resource == group and writes_at_report == before
        assert len(differences) == 1
        assert "is not in the spec" in differences[0] and "TCP" in differences[0] and "22/22" in differences[0]
        assert [c.split(" ")[0] for c in outcome.changes] == ["RevokeSecurityGroupEgress"]

    def test_a_converged_group_reports_nothing(self, sandbox, spec, ecs):
        ensure_security_group(ecs, spec)
        drift = Recorder(sandbox)
        assert ensure_security_group(ecs, spec, on_drift=drift).changes == []
        assert drift.reports == []

    def test_a_group_created_now_is_not_drift(self, sandbox, spec, ecs):
        drift = Recorder(sandbox)
        outcome = ensure_security_group(ecs, spec, on_drift=drift)
        assert outcome.changes[0].startswith("CreateSecurityGroup")
        assert drift.reports == []


class TestNetworkInterfaceDrift:
    def test_an_eni_moved_to_another_group_is_reported_before_it_is_moved_back(self, sandbox, spec, ecs):
        # given a converged link whose ENI someone put in the GitLab host's group as well
        group = ensure_security_group(ecs, spec).security_group_id
        sandbox.world.clock.set_scale(1000)
        eni = ensure_network_interface(ecs, spec, group, sleep=lambda s: None).network_interface_id
        other = sandbox.world.scenario["ecs"]["instances"][0]["security_group_ids"][0]
        ecs.modify_network_interface_attribute(
            ecs_models.ModifyNetworkInterfaceAttributeRequest(
                region_id=spec.region, network_interface_id=eni, security_group_id=[group, other]
            )
        )
        drift = Recorder(sandbox)
        before = drift.writes()
        # when
        outcome = ensure_network_interface(ecs, spec, group, sleep=lambda s: None, on_drift=drift)
        # then
        [(resource, differences, writes_at_report)] = drift.reports
        assert resource == eni and writes_at_report == before
        assert other in differences[0] and group in differences[0]
        assert outcome.changes[0].startswith(f"ModifyNetworkInterfaceAttribute {eni}")


@pytest.mark.usefixtures("prefect_harness")
class TestDriftInAScheduledRun:
    def test_the_run_writes_a_drift_artifact_and_event_then_converges(self, sandbox, spec, ecs):
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        from flows.vpc_build import vpc_build
        from tests.conftest import EXAMPLE_SPEC
        from tests.integration.test_build_monitoring import events

        # given a converged setup (builds are not needed here), then a rule added by hand
        sandbox.world.clock.set_scale(1000)
        first = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False)
        group = first["stages"][1]["resources"]["security_group"]
        add_egress(ecs, spec, group, cidr="203.0.113.0/24", port="443/443")
        # when the next (scheduled) run comes
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        run_id = str(state.state_details.flow_run_id)
        # then
        assert state.is_completed()
        link_row = state.result()["stages"][1]
        assert [c.split(" ")[0] for c in link_row["changes"]] == ["RevokeSecurityGroupEgress"]
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
        [report] = [a for a in found if a.key == "drift-demo-build"]
        assert f"security group `{group}`" in report.data and "203.0.113.0/24" in report.data
        [event] = events("acrvpc.drift.detected", run_id, 1)
        assert event["resource"]["prefect.resource.id"] == f"acrvpc.link.demo-build.{group}"
        assert any("203.0.113.0/24" in d for d in event["payload"]["differences"])
        # and the call log shows the revoke came after the reads, once
        calls = requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]
        assert sum(1 for c in calls if c["action"] == "RevokeSecurityGroupEgress") == 1
