"""The link/ENI transaction in a real Prefect run: stage retries inside it, rollback of a fatal failure, reruns.

Prefect rolls back a task's enclosing transaction before it retries the task (prefect-notes §10), so
the link and ENI stages retry their transient failures inside the task. These tests fail calls more
times than the in-place call retries allow (``ACRVPC_CALL_RETRIES=3``: four requests per call), so
the stage itself retries, and check what is left in the sandbox.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud import clients as cloud
from acrvpc.domain.spec import TAG_KEY
from flows.vpc_build import vpc_build
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.usefixtures("prefect_harness")

IN_PLACE_ATTEMPTS = 4  # one request and ACRVPC_CALL_RETRIES=3 retries


@pytest.fixture
def world(sandbox, monkeypatch):
    monkeypatch.setenv("ACRVPC_CALL_RETRIES", str(IN_PLACE_ATTEMPTS - 1))
    sandbox.world.clock.set_scale(200.0)
    return sandbox.world


def link_groups(world, spec) -> list[str]:
    return sorted(g for g, sg in world.ecs.groups.items() if sg.tags.get(TAG_KEY) == spec.name)


def link_enis(world, spec) -> dict[str, list[str]]:
    return {e: list(n.security_group_ids) for e, n in world.ecs.enis.items() if n.tags.get(TAG_KEY) == spec.name}


def answered(world, action: str, since: int = 0) -> list[dict[str, Any]]:
    return [c for c in world.calls.list(since) if c["action"] == action and c["status"] == 200]


def task_states(flow_run_id: Any) -> dict[str, list[str]]:
    """Stage name -> the state names of its task runs in this flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    states: dict[str, list[str]] = {}
    for run in runs:
        states.setdefault(run.name.split(" ")[0].split("-")[0], []).append(run.state.name if run.state else "")
    return states


class TestStageRetryInsideTheTransaction:
    def test_an_eni_stage_retry_keeps_the_link_group_and_uses_it(self, world, spec):
        # Given CreateNetworkInterface failing transiently more often than the call is retried in place
        world.faults.fail_next("CreateNetworkInterface", count=IN_PLACE_ATTEMPTS, code="ServiceUnavailable")
        # when the pipeline runs
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        # then it completes, the ENI stage having been retried as a whole (five requests: four, then one)
        assert state.is_completed(), state.message
        creates = [c for c in world.calls.list() if c["action"] == "CreateNetworkInterface"]
        assert [c["status"] for c in creates][-1] == 200 and len(creates) == IN_PLACE_ATTEMPTS + 1
        # and the link's one group still exists, is the one the ENI uses, and nothing was rolled back
        [group] = link_groups(world, spec)
        assert list(link_enis(world, spec).values()) == [[group]]
        assert state.result()["stages"][1]["resources"]["security_group"] == group
        assert len(answered(world, "CreateSecurityGroup")) == 1
        assert answered(world, "DeleteSecurityGroup") == [] and answered(world, "DeleteNetworkInterface") == []

    def test_a_fatal_eni_failure_after_a_link_stage_retry_still_deletes_the_group_this_run_created(self, world, spec):
        # Given the link stage retried after it created its group (a rule write failing transiently)
        world.faults.fail_next("AuthorizeSecurityGroupEgress", count=IN_PLACE_ATTEMPTS, code="ServiceUnavailable")
        # and the ENI stage then failing fatally (the RAM user may not grant the attach permission)
        world.faults.fail_next("CreateNetworkInterfacePermission", count=1, code="Forbidden.RAM")
        gitlab_group = "sg-bp1gitlab00000001"
        assert gitlab_group in world.ecs.groups
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        assert state.is_failed()
        assert "Forbidden.RAM" in state.message
        # then what this run created is gone, and what existed before is not
        assert link_groups(world, spec) == [] and link_enis(world, spec) == {}
        assert len(answered(world, "DeleteSecurityGroup")) == 1 and len(answered(world, "DeleteNetworkInterface")) == 1
        assert gitlab_group in world.ecs.groups

    def test_a_fatal_link_failure_deletes_the_group_it_created(self, world, spec):
        # Given the RAM user may create the group but not add its egress rules
        world.faults.fail_next("AuthorizeSecurityGroupEgress", count=1, code="Forbidden.RAM")
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        assert state.is_failed() and "Forbidden.RAM" in state.message
        # then the group it created is gone, and no ENI was made
        assert len(answered(world, "CreateSecurityGroup")) == 1 and len(answered(world, "DeleteSecurityGroup")) == 1
        assert link_groups(world, spec) == [] and answered(world, "CreateNetworkInterface") == []

    def test_a_fatal_failure_leaves_a_group_that_existed_before_the_run(self, world, spec):
        # Given a converged link from an earlier run
        vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False)
        [group] = link_groups(world, spec)
        enis = link_enis(world, spec)
        seq = world.calls.list()[-1]["seq"]
        # when a later run's ENI stage retries, then fails fatally
        world.faults.fail_next(
            "DescribeNetworkInterfacePermissions", count=IN_PLACE_ATTEMPTS, code="ServiceUnavailable"
        )
        world.faults.fail_next("DescribeNetworkInterfacePermissions", count=1, code="Forbidden.RAM")
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        assert state.is_failed() and "Forbidden.RAM" in state.message
        # then nothing is deleted
        assert link_groups(world, spec) == [group] and link_enis(world, spec) == enis
        assert [c["action"] for c in world.calls.list(seq) if c["writes"] and c["status"] == 200] == []


class TestRerunOfTheSameFlowRun:
    """A flow-level retry re-runs the same flow run, as the UI's Retry does: same cache keys."""

    def test_after_a_stage_retry_link_and_eni_come_back_cached(self, world, spec):
        # Given a run whose link and ENI stages both needed a stage retry, and whose bindings then fail fatally
        world.faults.fail_next("AuthorizeSecurityGroupEgress", count=IN_PLACE_ATTEMPTS, code="ServiceUnavailable")
        world.faults.fail_next("CreateNetworkInterface", count=IN_PLACE_ATTEMPTS, code="ServiceUnavailable")
        world.faults.fail_next("CreateRepository", count=2, code="Forbidden.RAM")
        # when the run is retried (once, right away)
        state = vpc_build.with_options(retries=1, retry_delay_seconds=0)(
            spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True
        )
        # then the retry completes, link and ENI coming from the cache of the first attempt
        assert state.is_completed(), state.message
        states = task_states(state.state_details.flow_run_id)
        assert "Cached" in states["link"] and "Cached" in states["eni"], states
        [group] = link_groups(world, spec)
        assert list(link_enis(world, spec).values()) == [[group]]
        assert len(answered(world, "CreateSecurityGroup")) == 1 and len(answered(world, "CreateNetworkInterface")) == 1

    def test_after_a_rollback_the_rerun_builds_the_link_again(self, world, spec):
        # Given a run whose ENI stage fails fatally once, after a stage retry (its link group is rolled back)
        world.faults.fail_next("CreateNetworkInterface", count=IN_PLACE_ATTEMPTS, code="ServiceUnavailable")
        world.faults.fail_next("CreateNetworkInterfacePermission", count=1, code="Forbidden.RAM")
        # when the run is retried
        state = vpc_build.with_options(retries=1, retry_delay_seconds=0)(
            spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True
        )
        # then the retry does not take the rolled-back group from a cache: it creates the link again and completes
        assert state.is_completed(), state.message
        assert len(answered(world, "DeleteSecurityGroup")) == 1
        [group] = link_groups(world, spec)
        assert list(link_enis(world, spec).values()) == [[group]]
        ecs = cloud.cloud_clients(spec).ecs
        attr = ecs.describe_security_group_attribute(
            m.DescribeSecurityGroupAttributeRequest(region_id=spec.region, security_group_id=group)
        ).body
        assert attr.inner_access_policy == "Drop"
