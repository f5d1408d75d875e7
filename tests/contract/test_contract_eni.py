"""Contract: stage eni (tasks.eni.ensure_network_interface) against ECS's documented answers.

Actions: DescribeNetworkInterfaces, CreateNetworkInterface, ModifyNetworkInterfaceAttribute,
DescribeNetworkInterfacePermissions, CreateNetworkInterfacePermission; then the wait
Available -> Attaching -> InUse read through DescribeNetworkInterfaces.
"""

from __future__ import annotations

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException

from acrvpc.cloud.errors import PipelineError, is_retryable
from tasks.eni import ensure_network_interface
from tests.contract.support import case, cassette

GROUP = "sg-bp1acr0build0000****"  # the group of the documented ENI
ENI = "eni-bp14v2sdd3v8htln****"


def _no_sleep(seconds: float) -> None:
    return None


class TestEnsureNetworkInterface:
    @cassette("stages/eni/converged.success.yaml")
    def test_documented_eni_in_use_with_grant_costs_two_reads(self, clients, contract_spec):
        # given the documented ENI (InUse, in GROUP) and the documented InstanceAttach grant to account 1234567890
        # when
        outcome = ensure_network_interface(clients.ecs, contract_spec, GROUP, sleep=_no_sleep)
        # then
        assert (outcome.network_interface_id, outcome.status, outcome.private_ip) == (ENI, "InUse", "192.168.2.17")
        assert outcome.changes == []

    @cassette("stages/eni/create.success.yaml")
    def test_eni_is_created_granted_and_waited_for(self, clients, contract_spec):
        # given no tagged ENI, then the documented create answers, then Attaching and InUse
        # when
        outcome = ensure_network_interface(clients.ecs, contract_spec, GROUP, sleep=_no_sleep)
        # then
        assert outcome.status == "InUse"
        assert outcome.changes == [
            f"CreateNetworkInterface {ENI} (192.168.2.17)",
            f"CreateNetworkInterfacePermission eni-perm-bp1cs4lwn56lfb**** (InstanceAttach for account 1234567890 "
            f"on {ENI})",
        ]

    @cassette("stages/eni/drift.success.yaml")
    def test_eni_in_another_group_is_moved(self, clients, contract_spec):
        # given the documented ENI, but the link's group is another one
        # when
        outcome = ensure_network_interface(clients.ecs, contract_spec, "sg-bp1acr0build0001****", sleep=_no_sleep)
        # then
        assert outcome.changes == [
            f"ModifyNetworkInterfaceAttribute {ENI} SecurityGroupId=sg-bp1acr0build0001**** (was {GROUP})"
        ]

    @cassette("stages/eni/attach-failed.yaml")
    def test_back_to_available_after_attaching_is_attach_failed(self, clients, contract_spec):
        # given the created ENI goes Attaching, then Available again
        # when
        with pytest.raises(PipelineError) as caught:
            ensure_network_interface(clients.ecs, contract_spec, GROUP, sleep=_no_sleep)
        # then
        assert caught.value.code == "ENI_ATTACH_FAILED"

    @pytest.mark.parametrize(
        "group, code",
        [
            case("stages/eni/DescribeNetworkInterfaces.Forbidden.RAM.yaml", GROUP, "Forbidden.RAM"),
            case("stages/eni/CreateNetworkInterface.InvalidParameter.yaml", GROUP, "InvalidParameter"),
            case(
                "stages/eni/ModifyNetworkInterfaceAttribute.InvalidParameter.yaml",
                "sg-bp1acr0build0001****",
                "InvalidParameter",
            ),
            case("stages/eni/CreateNetworkInterfacePermission.Forbidden.RAM.yaml", GROUP, "Forbidden.RAM"),
        ],
    )
    def test_fatal_code_becomes_pipeline_error(self, group, code, clients, contract_spec):
        # given an ECS error answer in the documented error shape
        # when
        with pytest.raises(PipelineError) as caught:
            ensure_network_interface(clients.ecs, contract_spec, group, sleep=_no_sleep)
        # then
        assert caught.value.code == code
        assert not caught.value.retryable

    @cassette("stages/eni/DescribeNetworkInterfacePermissions.Throttling.User.yaml")
    def test_throttling_is_reraised_for_retry(self, clients, contract_spec):
        # given Throttling.User on the permission read
        # when
        with pytest.raises(ClientException) as caught:
            ensure_network_interface(clients.ecs, contract_spec, GROUP, sleep=_no_sleep)
        # then
        assert caught.value.code == "Throttling.User"
        assert is_retryable(caught.value)
