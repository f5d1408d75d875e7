"""acrvpc.domain.netcheck: zones, CIDR overlaps and security-group rule evaluation (pure logic)."""

from __future__ import annotations

import pytest

from acrvpc.domain import netcheck
from acrvpc.domain.netcheck import admits_egress, admits_ingress, evaluate, ip_in_any, overlaps, zone_support

BLOCK = "100.104.0.0/16"


def rule(
    rule_id: str,
    source: str = BLOCK,
    *,
    policy: str = "Accept",
    priority: int | str = 1,
    protocol: str = "TCP",
    ports: str = "80/80",
    direction: str = "ingress",
    **extra: str,
) -> dict:
    """A Permission dict shaped like DescribeSecurityGroupAttribute's to_map() output."""
    peer = {"SourceCidrIp": source} if direction == "ingress" else {"DestCidrIp": source}
    return {
        "SecurityGroupRuleId": rule_id,
        "Direction": direction,
        "Policy": policy,
        "Priority": str(priority),
        "IpProtocol": protocol,
        "PortRange": ports,
        "NicType": "intranet",
        **peer,
        **extra,
    }


class TestZoneSupport:
    def test_listed_public_zone_is_supported(self):
        # given / when
        ok, reason = zone_support("cn-hangzhou", "cn-hangzhou-h")
        # then
        assert ok is True
        assert "cn-hangzhou-h" in reason

    def test_unlisted_zone_fails_and_names_the_zones_to_use(self):
        ok, reason = zone_support("cn-hangzhou", "cn-hangzhou-b")
        assert ok is False
        assert "cn-hangzhou-h" in reason and "cn-hangzhou-b" in reason

    def test_retired_region_fails_with_that_reason(self):
        ok, reason = zone_support("ap-southeast-2", "ap-southeast-2a")
        assert ok is False
        assert "retired" in reason and "ended" in reason

    def test_finance_cloud_zone_is_supported(self):
        ok, reason = zone_support("cn-hangzhou-finance", "cn-hangzhou-finance-j")
        assert ok is True
        assert "finance" in reason

    def test_unknown_region_fails(self):
        ok, reason = zone_support("xx-nowhere-1", "xx-nowhere-1a")
        assert ok is False
        assert "not in the VPC-mode zone table" in reason

    def test_zone_of_another_region_fails(self):
        ok, reason = zone_support("cn-beijing", "cn-hangzhou-h")
        assert ok is False
        assert "not in region cn-beijing" in reason

    def test_table_is_the_packaged_copy(self):
        table = netcheck.zone_table()
        assert table["reverse_access_cidr"] == BLOCK
        assert "cn-hangzhou-e" in netcheck.supported_zones("cn-hangzhou")
        assert netcheck.supported_zones("ap-southeast-2") == []


class TestOverlaps:
    def test_supernet_overlaps_the_whole_block(self):
        assert overlaps("100.64.0.0/10") == BLOCK

    def test_subnet_names_the_overlapping_range(self):
        assert overlaps("100.104.8.0/22") == "100.104.8.0/22"

    def test_same_block_overlaps(self):
        assert overlaps(BLOCK) == BLOCK

    def test_neighbour_does_not_overlap(self):
        assert overlaps("100.105.0.0/16") is None
        assert overlaps("10.0.0.0/8") is None

    def test_other_block_argument(self):
        assert overlaps("192.168.0.0/16", block="192.168.1.0/24") == "192.168.1.0/24"


class TestIpInAny:
    def test_returns_the_containing_cidr(self):
        assert ip_in_any("192.168.1.20", ["10.0.0.0/8", "192.168.0.0/16"]) == "192.168.0.0/16"

    def test_none_when_outside(self):
        assert ip_in_any("172.16.0.5", ["10.0.0.0/8", "192.168.0.0/16"]) is None

    def test_skips_empty_entries(self):
        assert ip_in_any("10.1.2.3", ["", "10.0.0.0/8"]) == "10.0.0.0/8"


class TestParseTarget:
    @pytest.mark.parametrize(
        "text, expected",
        [
            ("192.168.1.30", ("192.168.1.30/32", "1/65535")),
            ("10.0.0.0/24", ("10.0.0.0/24", "1/65535")),
            ("192.168.1.30:8081", ("192.168.1.30/32", "8081/8081")),
        ],
    )
    def test_valid(self, text, expected):
        assert netcheck.parse_target(text) == expected

    @pytest.mark.parametrize(
        "text", ["maven.local", "10.0.0.1/33", "10.0.0.0/8:0", "192.168.1.30:99999", "10.0.0.5/24", "::1"]
    )
    def test_invalid(self, text):
        with pytest.raises(ValueError):
            netcheck.parse_target(text)


class TestPortRange:
    @pytest.mark.parametrize(
        "text, expected",
        [
            ("443/443", (443, 443)),
            ("1/65535", (1, 65535)),
            ("-1/-1", (1, 65535)),
            ("", (1, 65535)),
            ("8000/9000", (8000, 9000)),
        ],
    )
    def test_parse(self, text, expected):
        assert netcheck.parse_port_range(text) == expected


class TestAdmitsIngress:
    def test_exact_rule_admits(self):
        verdict = admits_ingress([rule("sgr-1")], BLOCK, "TCP", 80)
        assert verdict.allowed and verdict.rule_id == "sgr-1"

    def test_no_rule_is_denied_by_default(self):
        verdict = admits_ingress([], BLOCK, "TCP", 80)
        assert not verdict.allowed
        assert verdict.rule_id == ""
        assert verdict.uncovered == BLOCK

    def test_a_slash_24_inside_the_block_is_not_enough(self):
        verdict = admits_ingress([rule("sgr-24", "100.104.0.0/24")], BLOCK, "TCP", 80)
        assert not verdict.allowed
        assert "100.104.0.0/24" in verdict.reason
        assert verdict.uncovered

    def test_two_halves_together_cover_the_block(self):
        verdict = admits_ingress([rule("a", "100.104.0.0/17"), rule("b", "100.104.128.0/17")], BLOCK, "TCP", 80)
        assert verdict.allowed

    def test_supernet_source_admits(self):
        assert admits_ingress([rule("sgr-all", "0.0.0.0/0")], BLOCK, "TCP", 80).allowed

    def test_wrong_port_denied(self):
        assert not admits_ingress([rule("sgr-1", ports="443/443")], BLOCK, "TCP", 80).allowed

    @pytest.mark.parametrize(
        "ports, port, allowed",
        [
            ("1/65535", 8929, True),
            ("-1/-1", 80, True),
            ("8000/9000", 8929, True),
            ("8000/9000", 80, False),
            ("443/443", 443, True),
        ],
    )
    def test_port_ranges(self, ports, port, allowed):
        assert admits_ingress([rule("sgr-1", ports=ports)], BLOCK, "TCP", port).allowed is allowed

    @pytest.mark.parametrize(
        "protocol, allowed",
        [("ALL", True), ("all", True), ("tcp", True), ("TCP", True), ("UDP", False), ("ICMP", False)],
    )
    def test_protocols(self, protocol, allowed):
        r = rule("sgr-1", protocol=protocol, ports="-1/-1" if protocol.upper() == "ALL" else "80/80")
        assert admits_ingress([r], BLOCK, "TCP", 80).allowed is allowed

    def test_lower_priority_number_wins(self):
        rules = [rule("accept-100", priority=100), rule("drop-1", policy="Drop", priority=1)]
        verdict = admits_ingress(rules, BLOCK, "TCP", 80)
        assert not verdict.allowed and verdict.rule_id == "drop-1"

    def test_accept_with_higher_precedence_beats_later_drop(self):
        rules = [
            rule("drop-100", "0.0.0.0/0", policy="Drop", priority=100, protocol="ALL", ports="-1/-1"),
            rule("accept-1", priority=1),
        ]
        verdict = admits_ingress(rules, BLOCK, "TCP", 80)
        assert verdict.allowed and verdict.rule_id == "accept-1"

    def test_drop_beats_accept_at_equal_priority(self):
        rules = [rule("accept-5", priority=5), rule("drop-5", policy="Drop", priority=5)]
        verdict = admits_ingress(rules, BLOCK, "TCP", 80)
        assert not verdict.allowed and verdict.rule_id == "drop-5"

    def test_drop_covering_part_of_the_block_denies_it(self):
        rules = [rule("drop-part", "100.104.7.0/24", policy="Drop", priority=1), rule("accept-all", priority=1)]
        verdict = admits_ingress(rules, BLOCK, "TCP", 80)
        assert not verdict.allowed
        assert verdict.rule_id == "drop-part"
        assert "100.104.7.0/24" in verdict.reason

    def test_drop_behind_a_covering_accept_does_not_matter(self):
        rules = [rule("accept-1", priority=1), rule("drop-part", "100.104.7.0/24", policy="Drop", priority=2)]
        assert admits_ingress(rules, BLOCK, "TCP", 80).allowed

    def test_drop_of_other_port_does_not_matter(self):
        rules = [rule("drop-22", "0.0.0.0/0", policy="Drop", ports="22/22"), rule("accept-80")]
        assert admits_ingress(rules, BLOCK, "TCP", 80).allowed

    def test_egress_rules_are_ignored_for_ingress(self):
        assert not admits_ingress([rule("egress", direction="egress")], BLOCK, "TCP", 80).allowed

    def test_group_source_rules_do_not_cover_a_block(self):
        r = rule("by-group", "")
        r["SourceGroupId"] = "sg-other"
        assert not admits_ingress([r], BLOCK, "TCP", 80).allowed

    def test_quintuple_accept_for_another_destination_does_not_count(self):
        r = rule("q", DestCidrIp="192.168.1.99/32")
        assert not admits_ingress([r], BLOCK, "TCP", 80, dest_ip="192.168.1.20").allowed
        assert admits_ingress([r], BLOCK, "TCP", 80, dest_ip="192.168.1.99").allowed

    def test_priority_given_as_int_or_missing(self):
        rules = [
            {
                "Direction": "ingress",
                "Policy": "Accept",
                "IpProtocol": "TCP",
                "PortRange": "80/80",
                "SourceCidrIp": BLOCK,
                "SecurityGroupRuleId": "no-priority",
            },
            rule("drop-int", policy="Drop", priority=1),
        ]
        rules[1]["Priority"] = 1
        assert admits_ingress(rules, BLOCK, "TCP", 80).rule_id == "drop-int"


class TestMultipleGroups:
    """An instance in several groups: the rules of all groups are aggregated and sorted together."""

    def test_accept_in_one_group_is_enough_when_nothing_drops(self):
        group_a = [rule("a-ssh", "192.168.0.0/16", ports="22/22")]
        group_b = [rule("b-http")]
        assert admits_ingress(group_a + group_b, BLOCK, "TCP", 80).allowed

    def test_drop_in_another_group_with_higher_precedence_denies(self):
        group_a = [rule("a-http", priority=10)]
        group_b = [rule("b-drop", "100.64.0.0/10", policy="Drop", priority=1, protocol="ALL", ports="-1/-1")]
        verdict = admits_ingress(group_a + group_b, BLOCK, "TCP", 80)
        assert not verdict.allowed and verdict.rule_id == "b-drop"

    def test_halves_in_two_groups_cover_the_block(self):
        assert admits_ingress([rule("a", "100.104.0.0/17")] + [rule("b", "100.104.128.0/17")], BLOCK, "TCP", 80)


class TestEvaluateEgress:
    def test_managed_group_allows_gitlab_then_drops_the_rest(self):
        rules = [
            rule("gitlab", "192.168.1.20/32", direction="egress"),
            rule(
                "drop-all", "0.0.0.0/0", policy="Drop", priority=100, protocol="ALL", ports="-1/-1", direction="egress"
            ),
        ]
        assert admits_egress(rules, "192.168.1.20/32", "TCP", 80).allowed
        blocked = admits_egress(rules, "8.8.8.8/32", "TCP", 443)
        assert not blocked.allowed and blocked.rule_id == "drop-all"

    def test_basic_group_default_admits_when_told(self):
        assert admits_egress([], "8.8.8.8/32", "TCP", 443, default_accept=True).allowed
        assert not admits_egress([], "8.8.8.8/32", "TCP", 443).allowed

    def test_ipv6_block_is_refused(self):
        with pytest.raises(ValueError):
            evaluate([], direction="ingress", peer_cidr="::/0")


class TestIngressRuleFix:
    def test_names_the_exact_rule(self):
        fix = netcheck.ingress_rule_fix("sg-bp1x", 8929, region="cn-hangzhou")
        assert "AuthorizeSecurityGroup" in fix
        assert "--SecurityGroupId sg-bp1x" in fix
        assert "--Permissions.1.PortRange 8929/8929" in fix
        assert "--Permissions.1.SourceCidrIp 100.104.0.0/16" in fix


class TestCoveringRoute:
    ROUTES = [
        {"RouteEntryId": "wide", "DestinationCidrBlock": "100.64.0.0/10"},
        {"RouteEntryId": "exact", "DestinationCidrBlock": "100.104.0.0/16"},
        {"RouteEntryId": "narrow", "DestinationCidrBlock": "100.104.0.0/24"},
        {"RouteEntryId": "bad", "DestinationCidrBlock": "not-a-cidr"},
    ]

    def test_longest_prefix_that_contains_the_whole_block(self):
        assert netcheck.covering_route(self.ROUTES, BLOCK)["RouteEntryId"] == "exact"

    def test_supernet_route_covers(self):
        assert netcheck.covering_route(self.ROUTES[:1], BLOCK)["RouteEntryId"] == "wide"

    def test_narrower_route_does_not_cover(self):
        assert netcheck.covering_route(self.ROUTES[2:], BLOCK) is None
