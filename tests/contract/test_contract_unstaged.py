"""Contract: actions of the DESIGN stage table that no stage function calls (yet).

``DescribeRouteTableList`` (preflight: the code reads the VBR's route table id from
DescribeVirtualBorderRouters instead) and ``AuthorizeSecurityGroup`` (preflight's opt-in fix). The
smallest unit of our code that handles their answers is the client acrvpc.cloud.clients builds and the
error classification of acrvpc.cloud.errors, so these tests hold those to the documented answers.
"""

from __future__ import annotations

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as vpc_models

from acrvpc.cloud.errors import FIXES, error_code, explain, is_retryable
from tests.contract.support import cassette


class TestDescribeRouteTableList:
    @cassette("actions/vpc/DescribeRouteTableList.success.yaml")
    def test_documented_vbr_table_is_parsed(self, clients, contract_spec):
        # given the documented answer (wrapper RouterTableList.RouterTableListType, sic)
        request = vpc_models.DescribeRouteTableListRequest(
            region_id=contract_spec.region, router_type="VBR", router_id="vbr-bp1lhl0taikrte****"
        )
        # when
        body = clients.vpc.describe_route_table_list(request).body
        # then
        tables = body.router_table_list.router_table_list_type
        assert [(t.route_table_id, t.router_type, t.status) for t in tables] == [
            ("vtb-bp1vbr00000000****", "VBR", "Available")
        ]
        assert body.total_count == 1

    @cassette("actions/vpc/DescribeRouteTableList.error.Forbidden.RAM.yaml")
    def test_ram_denial_is_fatal_with_a_fix(self, clients, contract_spec):
        # given a RAM denial
        request = vpc_models.DescribeRouteTableListRequest(region_id=contract_spec.region)
        # when
        with pytest.raises(ClientException) as caught:
            clients.vpc.describe_route_table_list(request)
        # then
        assert error_code(caught.value) == "Forbidden.RAM"
        assert not is_retryable(caught.value)
        assert FIXES["Forbidden.RAM"] in explain(caught.value)


class TestAuthorizeSecurityGroup:
    def _request(self, spec):
        rule = ecs_models.AuthorizeSecurityGroupRequestPermissions(
            policy="accept", priority="1", ip_protocol="TCP", port_range="80/80", source_cidr_ip="100.104.0.0/16"
        )
        return ecs_models.AuthorizeSecurityGroupRequest(
            region_id=spec.region, security_group_id="sg-bp1gitlab000000****", permissions=[rule]
        )

    @cassette("actions/ecs/AuthorizeSecurityGroup.success.yaml")
    def test_documented_answer_is_request_id_only(self, clients, contract_spec):
        # given the documented answer {RequestId}
        # when
        response = clients.ecs.authorize_security_group(self._request(contract_spec))
        # then
        assert response.status_code == 200
        assert response.body.to_map() == {"RequestId": "CEF72CEB-54B6-4AE8-B225-F876FF7BA984"}

    @cassette("actions/ecs/AuthorizeSecurityGroup.error.InvalidParameter.yaml")
    def test_invalid_parameter_is_fatal(self, clients, contract_spec):
        # given InvalidParameter (HTTP 400)
        # when
        with pytest.raises(ClientException) as caught:
            clients.ecs.authorize_security_group(self._request(contract_spec))
        # then
        assert error_code(caught.value) == "InvalidParameter"
        assert caught.value.status_code == 400
        assert not is_retryable(caught.value)
