"""Contract: teardown (tasks.teardown.teardown_link) against ECS's documented answers.

Actions: DescribeNetworkInterfaces, DescribeSecurityGroups, DescribeNetworkInterfacePermissions,
DeleteNetworkInterfacePermission, DeleteNetworkInterface, DeleteSecurityGroup (``{RequestId}``
answers). The documented ENI and group carry this link's tag in these scenarios: teardown touches
nothing else.
"""

from __future__ import annotations

import pytest

from acrvpc.cloud.errors import PipelineError
from tasks.teardown import teardown_link
from tests.contract.support import case, cassette

ENI = "eni-bp14v2sdd3v8htln****"
GROUP = "sg-bp67acfmxazb4p****"


def _no_sleep(seconds: float) -> None:
    return None


class TestTeardownLink:
    @cassette("stages/teardown/success.yaml")
    def test_tagged_eni_then_group_are_deleted(self, clients, contract_spec):
        # given the documented ENI (InUse, InstanceAttach granted) and group, tagged for this link
        # when
        outcome = teardown_link(clients.ecs, contract_spec, sleep=_no_sleep)
        # then
        assert outcome.changes == [
            f"DeleteNetworkInterfacePermission eni-perm-bp1cs4lwn56lfb**** (InstanceAttach for account 1234567890 "
            f"on {ENI})",
            f"DeleteNetworkInterface {ENI}",
            f"DeleteSecurityGroup {GROUP}",
        ]
        assert outcome.resources == {"network_interfaces": ENI, "security_groups": GROUP}

    @cassette("stages/teardown/nothing.success.yaml")
    def test_nothing_tagged_makes_no_write(self, clients, contract_spec):
        # given no tagged ENI or group
        # when
        outcome = teardown_link(clients.ecs, contract_spec, sleep=_no_sleep)
        # then
        assert outcome.changes == []
        assert outcome.resources == {}

    @cassette("stages/teardown/DeleteSecurityGroup.DependencyViolation.yaml")
    def test_group_still_in_use_is_retried(self, clients, contract_spec):
        # given DependencyViolation once (an ENI still being deleted), then success
        slept = []
        # when
        outcome = teardown_link(clients.ecs, contract_spec, sleep=slept.append)
        # then
        assert outcome.changes == [f"DeleteSecurityGroup {GROUP}"]
        assert slept == [0.5]

    @pytest.mark.parametrize(
        "code",
        [
            case("stages/teardown/DeleteNetworkInterfacePermission.Forbidden.RAM.yaml", "Forbidden.RAM"),
            case("stages/teardown/DeleteNetworkInterface.InvalidParameter.yaml", "InvalidParameter"),
            case("stages/teardown/DeleteSecurityGroup.Forbidden.RAM.yaml", "Forbidden.RAM"),
        ],
    )
    def test_fatal_code_becomes_pipeline_error(self, code, clients, contract_spec):
        # given an ECS error answer in the documented error shape
        # when
        with pytest.raises(PipelineError) as caught:
            teardown_link(clients.ecs, contract_spec, sleep=_no_sleep)
        # then
        assert caught.value.code == code
        assert not caught.value.retryable
