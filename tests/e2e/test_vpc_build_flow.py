"""The whole flow on a Prefect test server against the sandbox."""

from __future__ import annotations

import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from acrvpc.cloud.errors import PipelineError
from flows.vpc_build import vpc_build
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.e2e

STAGES = ["preflight", "link", "eni", "gitlab", "binding", "build"]


@pytest.fixture
def fast_sandbox(sandbox):
    sandbox.world.clock.set_scale(50.0)
    return sandbox


def writes_since(sandbox, seq: int) -> list[str]:
    return [c["action"] for c in sandbox.world.calls.list(seq) if c["writes"]]


class TestFirstRun:
    def test_all_six_stages_complete_and_images_are_built(self, prefect_harness, fast_sandbox):
        summary = vpc_build(spec_path=str(EXAMPLE_SPEC))
        assert [s["stage"] for s in summary["stages"]] == STAGES
        assert all(s["result"] == "completed" for s in summary["stages"])
        assert sorted(b["image"] for b in summary["builds"]) == ["apps/billing-api:latest", "apps/web-frontend:latest"]
        assert all(b["status"] == "SUCCESS" and b["log_lines"] > 0 for b in summary["builds"])
        # the sandbox saw the writes that set everything up, ENI included
        writes = set(writes_since(fast_sandbox, 0))
        assert {
            "CreateSecurityGroup",
            "AuthorizeSecurityGroupEgress",
            "CreateNetworkInterface",
            "CreateNetworkInterfacePermission",
            "CreateRepository",
            "CreateRepoSourceCodeRepo",
            "CreateRepoBuildRule",
            "CreateBuildRecordByRule",
        } <= writes

    def test_run_is_recorded_with_a_task_run_per_stage(self, prefect_harness, fast_sandbox):
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), return_state=True)
        assert state.is_completed()
        run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            assert runs[0].state.is_completed()
            names: set[str] = set()
            for _ in range(100):  # task runs are recorded asynchronously (prefect-notes §2)
                task_runs = client.read_task_runs(
                    task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
                )
                names = {
                    tr.name.split(" ")[0].split("-")[0] for tr in task_runs if tr.state and tr.state.is_completed()
                }
                if set(STAGES) <= names:
                    break
                time.sleep(0.2)
            assert set(STAGES) <= names


class TestSecondRun:
    def test_second_run_only_starts_builds(self, prefect_harness, fast_sandbox):
        # Given a converged sandbox after a first run
        vpc_build(spec_path=str(EXAMPLE_SPEC))
        seq = len(fast_sandbox.world.calls.list())
        # when the same spec runs again
        summary = vpc_build(spec_path=str(EXAMPLE_SPEC))
        # then the only writes are the builds it deliberately starts, one per rule with build: true
        assert writes_since(fast_sandbox, seq) == ["CreateBuildRecordByRule", "CreateBuildRecordByRule"]
        changes = {s["stage"]: s["changes"] for s in summary["stages"]}
        assert all(changes[s] == [] for s in STAGES[:-1])


class TestFailures:
    def test_failed_build_fails_the_run_and_names_it(self, prefect_harness, fast_sandbox):
        fast_sandbox.world.cr.fail_repos = {"apps/web-frontend"}
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), return_state=True)
        assert state.is_failed()
        with pytest.raises(PipelineError) as info:
            state.result()
        assert info.value.code == "BUILD_FAILED"
        assert "apps/web-frontend" in str(info.value) and "apps/billing-api" not in str(info.value)

    def test_preflight_failure_stops_before_any_write(self, prefect_harness, fast_sandbox):
        fast_sandbox.world.cr.instances["cri-sandbox0demo0001"].status = "STOPPED"
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), return_state=True)
        assert state.is_failed()
        with pytest.raises(PipelineError) as info:
            state.result()
        assert info.value.code == "PREFLIGHT_FAILED"
        assert writes_since(fast_sandbox, 0) == []
