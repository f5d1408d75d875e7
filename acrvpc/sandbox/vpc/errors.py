"""VPC 2016-04-28 error answers: one class per error code, with its HTTP status and message.

Codes and messages follow the VPC API reference error tables and the Terraform provider's
``errors.go`` (which spells the vSwitch one ``InvalidVswitchID.NotFound`` for the VPC API;
ECS spells its own ``InvalidVSwitchId.NotFound``).
"""

from __future__ import annotations

from ..core.errors import RpcError


class InvalidVpcIdNotFound(RpcError):
    code = "InvalidVpcID.NotFound"
    status = 404

    def __init__(self, vpc_id: str) -> None:
        super().__init__(f"Specified VPC does not exist. ({vpc_id})")


class InvalidVSwitchIdNotFound(RpcError):
    code = "InvalidVswitchID.NotFound"
    status = 404

    def __init__(self, vswitch_id: str) -> None:
        super().__init__(f"Specified virtual switch does not exist. ({vswitch_id})")


class InvalidRouteTableIdNotFound(RpcError):
    code = "InvalidRouteTableId.NotFound"
    status = 404

    def __init__(self, route_table_id: str) -> None:
        super().__init__(f"Specified route table does not exist. ({route_table_id})")


class InvalidCidrBlockMalformed(RpcError):
    code = "InvalidCidrBlock.Malformed"
    status = 400

    def __init__(self, cidr: str) -> None:
        super().__init__(f"Specified CIDR block is not valid. ({cidr})")


class InvalidCidrBlock(RpcError):
    """The destination lies in a vSwitch's CIDR, or a VBR route sends 100.64.0.0/10 to the data center."""

    code = "InvalidCidrBlock"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(f"Specified CIDR block is not valid. {detail}")


class InvalidDestinationCidrBlock(RpcError):
    """A vRouter route whose destination is or lies inside 100.64.0.0/10."""

    code = "InvalidDestinationCidrBlock"
    status = 400

    def __init__(self, cidr: str) -> None:
        super().__init__(
            f"The specified destinationCidrBlock must not included in black list cidr. ({cidr} "
            f"lies inside 100.64.0.0/10)"
        )


class InvalidCidrBlockDuplicate(RpcError):
    code = "InvalidCIDRBlock.Duplicate"
    status = 400

    def __init__(self, cidr: str) -> None:
        super().__init__(f"Specified CIDR block is already exists. ({cidr})")


class IncorrectRouteEntryStatus(RpcError):
    code = "IncorrectRouteEntryStatus"
    status = 400
    message = "Some route entry status blocked this operation."


class InvalidNextHopNotFound(RpcError):
    code = "InvalidNextHop.NotFound"
    status = 400

    def __init__(self, detail: str = "") -> None:
        super().__init__("Specified next hop does not exist." + (f" {detail}" if detail else ""))


class NextHopBothNull(RpcError):
    code = "InvalidNexthopTypeAndList.BothNull"
    status = 400
    message = "both nexthopType and nextHopList are null."


class NextHopBothNotNull(RpcError):
    code = "InvalidNexthopTypeAndList.BothNotNull"
    status = 400
    message = "both nexthopType and nextHopList are not null."


class InvalidNextHopListSize(RpcError):
    code = "InvalidNexthopListSize"
    status = 400
    message = "nexthop size is illegal. Must be between 2 and 4."


class InvalidRouterType(RpcError):
    code = "InvalidRouterType"
    status = 400
    message = "Cannot specify nexthop list in vbr's route table."


class InvalidVbrStatus(RpcError):
    code = "InvalidVBRStatus"
    status = 400
    message = "invalid virtual border router status."


class QuotaExceeded(RpcError):
    code = "QuotaExceeded"
    status = 400
    message = "Route entry quota exceeded in this route table."


class DryRunOperation(RpcError):
    code = "DryRunOperation"
    status = 400
    message = "Request validation has been passed with DryRun flag set."


class InvalidFilterKey(RpcError):
    code = "InvalidFilterKey.ValueNotSupported"
    status = 400

    def __init__(self, key: str) -> None:
        super().__init__(f"Specified filter key is not supported: {key}.")
