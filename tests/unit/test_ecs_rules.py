"""The sandbox's security-group rule semantics (pure functions of acrvpc.sandbox.ecs.rules)."""

from __future__ import annotations

import ipaddress

import pytest

from acrvpc.sandbox.core.errors import RpcError
from acrvpc.sandbox.ecs.rules import (
    Rule,
    egress_verdict,
    evaluation_order,
    ingress_admits_block,
    normalize_permission,
    parse_port_range,
)

BLOCK = ipaddress.ip_network("100.104.0.0/16")


def rule(direction: str, policy: str, priority: int, cidr: str, protocol: str = "TCP", ports: str = "80/80") -> Rule:
    return Rule(f"sgr-{direction}-{policy}-{priority}-{cidr}", direction, policy, priority, protocol, ports, cidr)


class TestParsePortRange:
    @pytest.mark.parametrize(
        "protocol, value, expected",
        [
            ("TCP", "80/80", (80, 80)),
            ("UDP", "1/65535", (1, 65535)),
            ("ALL", "-1/-1", (-1, -1)),
            ("ICMP", "-1/-1", (-1, -1)),
            ("GRE", "-1/-1", (-1, -1)),
        ],
    )
    def test_valid_ranges(self, protocol, value, expected):
        assert parse_port_range(protocol, value) == expected

    @pytest.mark.parametrize(
        "protocol, value, code",
        [
            ("TCP", "80", "InvalidPortRange.Malformed"),
            ("TCP", "0/80", "InvalidPortRange.Malformed"),
            ("TCP", "443/80", "InvalidPortRange.Malformed"),
            ("TCP", "a/b", "InvalidPortRange.Malformed"),
            ("TCP", "-1/-1", "OperationDenied"),
            ("ALL", "1/65535", "OperationDenied"),
            ("ICMP", "8/8", "OperationDenied"),
        ],
    )
    def test_invalid_ranges_get_the_real_code(self, protocol, value, code):
        with pytest.raises(RpcError) as exc:
            parse_port_range(protocol, value)
        assert exc.value.code == code


class TestNormalizePermission:
    def test_normalizes_case_defaults_and_cidr(self):
        fields = normalize_permission("egress", {"IpProtocol": "tcp", "PortRange": "80/80", "DestCidrIp": "10.1.2.3/8"})
        assert fields == {
            "direction": "egress",
            "ip_protocol": "TCP",
            "port_range": "80/80",
            "policy": "Accept",
            "priority": 1,
            "cidr": "10.0.0.0/8",
            "description": "",
        }

    def test_a_bare_address_is_kept_as_given(self):
        fields = normalize_permission(
            "ingress",
            {
                "IpProtocol": "ALL",
                "PortRange": "-1/-1",
                "SourceCidrIp": "10.0.0.5",
                "Policy": "DROP",
                "Priority": "100",
            },
        )
        assert (fields["cidr"], fields["policy"], fields["priority"]) == ("10.0.0.5", "Drop", 100)

    @pytest.mark.parametrize(
        "perm, code",
        [
            ({"PortRange": "80/80", "DestCidrIp": "10.0.0.0/8"}, "MissingParameter"),
            (
                {"IpProtocol": "TCP", "PortRange": "80/80", "DestCidrIp": "10.0.0.0/8", "Priority": "0"},
                "InvalidPriority.Malformed",
            ),
            (
                {"IpProtocol": "TCP", "PortRange": "80/80", "DestCidrIp": "10.0.0.0/8", "Priority": "x"},
                "InvalidPriority.Malformed",
            ),
            ({"IpProtocol": "TCP", "PortRange": "80/80", "DestCidrIp": "fe80::/64"}, "InvalidDestCidrIp.Malformed"),
            ({"IpProtocol": "TCP", "PortRange": "80/80", "DestGroupId": "sg-1"}, "UnsupportedParameter"),
            ({"IpProtocol": "TCP", "PortRange": "80/80", "SourceCidrIp": "10.0.0.0/8"}, "MissingParameter"),
        ],
    )
    def test_invalid_permissions(self, perm, code):
        with pytest.raises(RpcError) as exc:
            normalize_permission("egress", perm)
        assert exc.value.code == code


class TestEvaluationOrder:
    def test_lower_priority_number_first_and_drop_before_accept_at_equal_priority(self):
        rules = [
            rule("egress", "Accept", 5, "0.0.0.0/0"),
            rule("egress", "Accept", 1, "0.0.0.0/0"),
            rule("egress", "Drop", 1, "0.0.0.0/0"),
        ]
        assert [(r.priority, r.policy) for r in evaluation_order(rules)] == [(1, "Drop"), (1, "Accept"), (5, "Accept")]


class TestEgressVerdict:
    def test_accept_before_the_lowest_priority_drop(self):
        rules = [rule("egress", "Drop", 100, "0.0.0.0/0", "ALL", "-1/-1"), rule("egress", "Accept", 1, "10.0.0.5/32")]
        assert egress_verdict(rules, "10.0.0.5", 80, True)[0] is True
        ok, decided_by = egress_verdict(rules, "10.0.0.5", 81, True)
        assert ok is False and decided_by is rules[0]

    def test_no_matching_rule_falls_back_to_the_default(self):
        rules = [rule("egress", "Accept", 1, "10.0.0.5/32")]
        assert egress_verdict(rules, "10.9.9.9", 80, True) == (True, None)
        assert egress_verdict(rules, "10.9.9.9", 80, False) == (False, None)

    def test_ingress_rules_do_not_count_for_egress(self):
        rules = [rule("ingress", "Drop", 1, "0.0.0.0/0", "ALL", "-1/-1")]
        assert egress_verdict(rules, "10.0.0.5", 80, True) == (True, None)


class TestIngressAdmitsBlock:
    def test_a_covering_accept_admits(self):
        assert ingress_admits_block([rule("ingress", "Accept", 1, "100.64.0.0/10")], BLOCK, 80)[0] is True

    def test_part_of_the_block_is_not_enough(self):
        assert ingress_admits_block([rule("ingress", "Accept", 1, "100.104.0.0/17")], BLOCK, 80) == (False, None)

    def test_a_partial_drop_first_denies(self):
        rules = [rule("ingress", "Accept", 2, "100.104.0.0/16"), rule("ingress", "Drop", 1, "100.104.9.0/24")]
        ok, decided_by = ingress_admits_block(rules, BLOCK, 80)
        assert ok is False and decided_by is rules[1]

    def test_a_drop_after_the_covering_accept_does_not_matter(self):
        rules = [
            rule("ingress", "Accept", 1, "100.104.0.0/16"),
            rule("ingress", "Drop", 50, "0.0.0.0/0", "ALL", "-1/-1"),
        ]
        assert ingress_admits_block(rules, BLOCK, 80)[0] is True

    def test_other_ports_are_not_admitted(self):
        assert ingress_admits_block([rule("ingress", "Accept", 1, "100.104.0.0/16")], BLOCK, 443) == (False, None)
