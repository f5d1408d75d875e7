"""ECS error answers: one class per code, with the HTTP status and message the real service uses.

Codes and statuses follow the ECS API error tables (AuthorizeSecurityGroup, CreateSecurityGroup,
DeleteSecurityGroup, AssignPrivateIpAddresses/CreateNetworkInterface). Where no public table names
the code, the class says so in its docstring (an assumption).
"""

from __future__ import annotations

from ..core.errors import RpcError


class InvalidSecurityGroupIdNotFound(RpcError):
    code = "InvalidSecurityGroupId.NotFound"
    status = 404

    def __init__(self, group_id: str) -> None:
        super().__init__(f"The specified SecurityGroupId does not exist. ({group_id})")


class InvalidVpcIdNotFound(RpcError):
    code = "InvalidVpcId.NotFound"
    status = 404

    def __init__(self, vpc_id: str) -> None:
        super().__init__(f"Specified VPC does not exist. ({vpc_id})")


class InvalidVSwitchIdNotFound(RpcError):
    code = "InvalidVSwitchId.NotFound"
    status = 404

    def __init__(self, vswitch_id: str) -> None:
        super().__init__(f"The specified VSwitchId does not exist. ({vswitch_id})")


class InvalidVSwitchIdIpNotEnough(RpcError):
    code = "InvalidVSwitchId.IpNotEnough"
    status = 403

    def __init__(self, vswitch_id: str) -> None:
        super().__init__(f'The specified VSwitch "{vswitch_id}" has not enough IpAddress.')


class InvalidOperationVpcMismatch(RpcError):
    """A security group outside the vSwitch's (or ENI's) VPC."""

    code = "InvalidOperation.VpcMismatch"
    status = 403

    def __init__(self, detail: str) -> None:
        super().__init__(f"The VPC of the specified resources does not match. {detail}")


class InvalidEniIdNotFound(RpcError):
    code = "InvalidEniId.NotFound"
    status = 404

    def __init__(self, eni_id: str) -> None:
        super().__init__(f"The specified NetworkInterfaceId does not exist. ({eni_id})")


class InvalidEniState(RpcError):
    code = "InvalidOperation.InvalidEniState"
    status = 400

    def __init__(self, eni_id: str, status: str) -> None:
        super().__init__(
            f"The current status of the network interface {eni_id} ({status}) does not support this operation."
        )


class InvalidNetworkInterfacePermissionIdNotFound(RpcError):
    """Assumption: no public table names this code; the NotFound pattern of ECS is followed."""

    code = "InvalidNetworkInterfacePermissionId.NotFound"
    status = 404

    def __init__(self, permission_id: str) -> None:
        super().__init__(f"The specified NetworkInterfacePermissionId does not exist. ({permission_id})")


class InvalidSecurityGroupRuleIdNotFound(RpcError):
    """Assumption: no public table names this code; the NotFound pattern of ECS is followed."""

    code = "InvalidSecurityGroupRuleId.NotFound"
    status = 404

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"The specified SecurityGroupRuleId does not exist. ({rule_id})")


class InvalidInstanceIdNotFound(RpcError):
    code = "InvalidInstanceId.NotFound"
    status = 404

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"The specified InstanceId does not exist. ({instance_id})")


class InvalidResourceIdNotFound(RpcError):
    code = "InvalidResourceId.NotFound"
    status = 404

    def __init__(self, resource_id: str) -> None:
        super().__init__(f"The specified ResourceIds are not found in our records. ({resource_id})")


class InvalidResourceTypeNotFound(RpcError):
    code = "InvalidResourceType.NotFound"
    status = 404

    def __init__(self, resource_type: str) -> None:
        super().__init__(f"The ResourceType provided does not exist in our records. ({resource_type})")


class InvalidTagKeyMalformed(RpcError):
    code = "InvalidTagKey.Malformed"
    status = 400

    def __init__(self, key: str) -> None:
        super().__init__(
            f"The specified Tag.n.Key is not valid: it may not be empty or start with aliyun or acs:. ({key!r})"
        )


class DependencyViolation(RpcError):
    code = "DependencyViolation"
    status = 403

    def __init__(self, group_id: str, users: list[str]) -> None:
        super().__init__(
            f"There is still instance(s) in the specified security group. ({group_id}: {', '.join(users)})"
        )


class IdempotentParameterMismatch(RpcError):
    code = "IdempotentParameterMismatch"
    status = 400
    message = "The specified parameters are different from before while using the same ClientToken."


class InvalidIpProtocolMalformed(RpcError):
    code = "InvalidIpProtocol.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "IpProtocol" is not valid. ({value!r})')


class InvalidPortRangeMalformed(RpcError):
    code = "InvalidPortRange.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "PortRange" is not valid. ({value!r})')


class IpProtocolPortRangeMismatch(RpcError):
    """TCP/UDP with ``-1/-1``, or ALL/ICMP/GRE with a real port range."""

    code = "OperationDenied"
    status = 400

    def __init__(self, protocol: str, port_range: str) -> None:
        super().__init__(
            f"The specified IpProtocol does not exist or IpProtocol and PortRange do not match. "
            f"({protocol} {port_range})"
        )


class InvalidPolicyMalformed(RpcError):
    code = "InvalidPolicy.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "Policy" is not valid. ({value!r})')


class InvalidPriorityMalformed(RpcError):
    code = "InvalidPriority.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "Priority" is not valid: it must be 1 to 100. ({value!r})')


class InvalidSourceCidrIpMalformed(RpcError):
    code = "InvalidSourceCidrIp.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "SourceCidrIp" is not valid. ({value!r})')


class InvalidDestCidrIpMalformed(RpcError):
    code = "InvalidDestCidrIp.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "DestCidrIp" is not valid. ({value!r})')


class MissingRuleAddress(RpcError):
    """A rule without a CIDR (the documented answer is MissingParameter with HTTP 403)."""

    code = "MissingParameter"
    status = 403

    def __init__(self, direction: str) -> None:
        pair = "SourceGroupId or SourceCidrIp" if direction == "ingress" else "DestGroupId or DestCidrIp"
        super().__init__(f'The input parameter "{pair}" cannot be both blank.')


class UnsupportedParameter(RpcError):
    code = "UnsupportedParameter"
    status = 400

    def __init__(self, name: str) -> None:
        super().__init__(f'The parameter "{name}" is not supported (acr-vpc-build sandbox: not emulated).')


class AuthorizationLimitExceed(RpcError):
    code = "AuthorizationLimitExceed"
    status = 403
    message = "The maximum number of authorization rules in the security group is exceeded."


class InvalidInnerAccessPolicy(RpcError):
    """Assumption: the documented ``InvalidParameter`` shape for a value outside Accept|Drop."""

    code = "InvalidInnerAccessPolicy.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "InnerAccessPolicy" is not valid: Accept or Drop. ({value!r})')


class InvalidSecurityGroupTypeMalformed(RpcError):
    """Assumption: the NotSupported pattern of ECS for a SecurityGroupType outside normal|enterprise."""

    code = "InvalidSecurityGroupType.NotSupported"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "SecurityGroupType" is not valid: normal or enterprise. ({value!r})')


class InvalidNextTokenMalformed(RpcError):
    code = "InvalidNextToken.Malformed"
    status = 400

    def __init__(self, value: str) -> None:
        super().__init__(f'The specified parameter "NextToken" is not valid. ({value!r})')
