"""The link/ENI transaction rolls back what a failed run created; teardown removes a whole link."""

from __future__ import annotations

import pytest

from acrvpc.cloud import clients as cloud
from flows.teardown import teardown
from flows.vpc_build import vpc_build
from tasks.teardown import find_link_resources
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.e2e


@pytest.fixture
def fast_sandbox(sandbox):
    sandbox.world.clock.set_scale(50.0)
    return sandbox


def tagged(spec) -> dict[str, list[str]]:
    return find_link_resources(cloud.cloud_clients(spec).ecs, spec)


class TestRollback:
    def test_fatal_failure_after_the_group_was_created_rolls_it_back(self, prefect_harness, fast_sandbox, spec):
        # Given a permission the RAM user lacks: the ENI stage fails after group and ENI exist
        fast_sandbox.world.faults.fail_next("CreateNetworkInterfacePermission", count=1, code="Forbidden.RAM")
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        assert state.is_failed()
        with pytest.raises(Exception) as info:
            state.result()
        assert "Forbidden.RAM" in str(info.value)
        # then what this run created is gone: no tagged group or ENI is left behind
        assert tagged(spec) == {"network_interfaces": [], "security_groups": []}
        writes = [c["action"] for c in fast_sandbox.world.calls.list() if c["writes"] and c["status"] == 200]
        assert "CreateSecurityGroup" in writes and "DeleteSecurityGroup" in writes
        assert "CreateNetworkInterface" in writes and "DeleteNetworkInterface" in writes

    def test_rerun_after_rollback_converges(self, prefect_harness, fast_sandbox, spec):
        fast_sandbox.world.faults.fail_next("CreateNetworkInterfacePermission", count=1, code="Forbidden.RAM")
        assert vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True).is_failed()
        summary = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False)
        found = tagged(spec)
        assert len(found["security_groups"]) == 1 and len(found["network_interfaces"]) == 1
        assert {s["stage"]: s["result"] for s in summary["stages"]}["eni"] == "completed"

    def test_pre_existing_group_is_not_rolled_back(self, prefect_harness, fast_sandbox, spec):
        # Given a converged link from an earlier run
        vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False)
        before = tagged(spec)
        # when a later run fails in the transaction (a drift repair refused)
        fast_sandbox.world.faults.fail_next("DescribeNetworkInterfacePermissions", count=1, code="Forbidden.RAM")
        assert vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True).is_failed()
        # then nothing that existed before is deleted
        assert tagged(spec) == before


class TestTeardown:
    def test_teardown_after_a_complete_run_leaves_no_tagged_resource(self, prefect_harness, fast_sandbox, spec):
        vpc_build(spec_path=str(EXAMPLE_SPEC))
        assert tagged(spec)["security_groups"]
        teardown(spec_path=str(EXAMPLE_SPEC))
        assert tagged(spec) == {"network_interfaces": [], "security_groups": []}
        # and a second teardown finds nothing and writes nothing
        seq = len(fast_sandbox.world.calls.list())
        teardown(spec_path=str(EXAMPLE_SPEC))
        assert [c for c in fast_sandbox.world.calls.list(seq) if c["writes"]] == []
