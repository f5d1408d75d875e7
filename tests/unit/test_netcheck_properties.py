"""Security-group evaluation (acrvpc.domain.netcheck.evaluate) against an independent reference model.

The reference model decides one packet at a time, by the documented ECS semantics, and knows nothing
of netcheck's block arithmetic:

* rules of the packet's direction are sorted by Priority (1 first); at equal priority Drop comes first;
  otherwise the order given is kept;
* the first rule whose peer CIDR holds the peer address, whose protocol is the packet's (or ALL), whose
  port range holds the port (``-1/-1``: every port) and whose local CIDR (if any) holds the member's
  address decides: Accept admits, Drop denies; no rule: the default;
* rules whose peer is a security group (no CIDR) never match an address of the block.

A block is admitted when every address in it is admitted. Blocks here are small (/24 to /27 inside
10.0.0.0/22) so the model checks every address; rule CIDRs nest in, straddle and miss the block.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acrvpc.domain import netcheck

SETTINGS = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(SETTINGS, max_examples=50)  # the weaker properties
PORTS = [1, 22, 79, 80, 81, 443, 8080, 65535]
PRIORITIES = [1, 2, 50, 100]
MEMBER = "192.168.1.20"
OTHER_MEMBER = "192.168.1.99"
KINDS = ("inside", "inside", "around", "around", "beside", "anywhere", "elsewhere")
POLICIES = ("Accept", "Drop", "accept", "drop")


# -- the reference model -----------------------------------------------------------------------------
def _ports(rule: dict[str, Any]) -> range:
    text = rule.get("PortRange") or "-1/-1"
    start, end = (int(x) for x in text.split("/"))
    return range(1, 65536) if (start, end) == (-1, -1) else range(start, end + 1)


def _applies(rule: dict[str, Any], *, direction: str, protocol: str, port: int, local: str | None) -> bool:
    """Whether the rule can decide a packet of this direction, protocol, port and member (any peer)."""
    peer_key, local_key = ("SourceCidrIp", "DestCidrIp") if direction == "ingress" else ("DestCidrIp", "SourceCidrIp")
    if (rule.get("Direction") or direction) != direction or not rule.get(peer_key):
        return False
    if (rule.get("IpProtocol") or "ALL").upper() not in ("ALL", protocol):
        return False
    if port not in _ports(rule):
        return False
    if rule.get(local_key):
        return local is not None and ipaddress.ip_address(local) in ipaddress.ip_network(rule[local_key], strict=False)
    return True


def _order(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int]:
        index, rule = item
        return int(rule["Priority"]), 0 if rule["Policy"].lower() == "drop" else 1, index

    return [rule for _, rule in sorted(enumerate(rules), key=key)]


def model_block(
    rules: list[dict[str, Any]],
    block: str,
    *,
    direction: str,
    protocol: str,
    port: int,
    local: str | None,
    default_accept: bool,
) -> dict[str, Any]:
    """Every address of ``block``, one packet each: is each admitted, which drops deny, which go undecided."""
    peer_key = "SourceCidrIp" if direction == "ingress" else "DestCidrIp"
    candidates = [
        (rule, ipaddress.ip_network(rule[peer_key], strict=False))
        for rule in _order(rules)
        if _applies(rule, direction=direction, protocol=protocol, port=port, local=local)
    ]
    admitted, drops, undecided = True, [], []
    for address in ipaddress.ip_network(block):
        deciding = next((rule for rule, net in candidates if address in net), None)
        if deciding is None:
            undecided.append(address)
            admitted = admitted and default_accept
        elif deciding["Policy"].lower() == "drop":
            admitted = False
            drops.append(deciding)
    return {"admitted": admitted, "drops": drops, "undecided": undecided}


# -- strategies --------------------------------------------------------------------------------------
@st.composite
def blocks(draw: st.DrawFn) -> str:
    """A /24 to /27 inside 10.0.0.0/22."""
    prefix = draw(st.integers(24, 27))
    return str(draw(st.sampled_from(list(ipaddress.ip_network("10.0.0.0/22").subnets(new_prefix=prefix)))))


@st.composite
def peer_cidrs(draw: st.DrawFn, block: str, kinds: tuple[str, ...] = KINDS) -> str:
    """A rule's peer CIDR: inside the block, around it, next to it, or elsewhere."""
    net = ipaddress.ip_network(block)
    kind = draw(st.sampled_from(kinds))
    if kind == "inside":  # a part of the block, down to one address
        prefix = draw(st.integers(net.prefixlen, 32))
        index = draw(st.integers(0, 2 ** (prefix - net.prefixlen) - 1))
        base = int(net.network_address) + index * 2 ** (32 - prefix)
        return f"{ipaddress.ip_address(base)}/{prefix}"
    if kind == "around":  # the block or a supernet of it
        return str(net.supernet(new_prefix=draw(st.integers(8, net.prefixlen))))
    if kind == "beside":  # a neighbour of the same size
        return str(next(n for n in net.supernet().subnets() if n != net))
    return "0.0.0.0/0" if kind == "anywhere" else "172.16.0.0/16"


@st.composite
def port_ranges(draw: st.DrawFn, protocol: str) -> str:
    if protocol == "ALL":
        return "-1/-1"
    if draw(st.integers(0, 3)) == 0:
        return "1/65535"
    start = draw(st.sampled_from(PORTS))
    end = draw(st.sampled_from([p for p in PORTS if p >= start]))
    return f"{start}/{end}"


@st.composite
def rules(
    draw: st.DrawFn, *, direction: str, block: str, policies: tuple[str, ...] = POLICIES, kinds: tuple[str, ...] = KINDS
) -> dict[str, Any]:
    protocol = draw(st.sampled_from(["TCP", "TCP", "tcp", "ALL", "UDP"]))
    peer_key, local_key = ("SourceCidrIp", "DestCidrIp") if direction == "ingress" else ("DestCidrIp", "SourceCidrIp")
    rule: dict[str, Any] = {
        "SecurityGroupRuleId": f"sgr-{draw(st.integers(0, 10**6)):07d}",
        "Direction": draw(st.sampled_from([direction] * 7 + ["egress" if direction == "ingress" else "ingress"])),
        "Policy": draw(st.sampled_from(policies)),
        "Priority": draw(st.sampled_from(PRIORITIES + [str(p) for p in PRIORITIES])),
        "IpProtocol": protocol,
        "PortRange": draw(port_ranges(protocol.upper())),
    }
    if draw(st.integers(0, 9)) == 0:
        rule["SourceGroupId" if direction == "ingress" else "DestGroupId"] = "sg-peer"  # no CIDR peer
    else:
        rule[peer_key] = draw(peer_cidrs(block, kinds))
    if draw(st.integers(0, 3)) == 0:
        rule[local_key] = draw(st.sampled_from(["192.168.1.0/24", "192.168.1.20/32", "192.168.2.0/24"]))
    return rule


def rule_lists(direction: str, block: str, **kwargs: Any) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(rules(direction=direction, block=block, **kwargs), min_size=1, max_size=8)


# -- properties --------------------------------------------------------------------------------------
class TestEvaluateAgainstTheModel:
    @SETTINGS
    @given(
        data=st.data(),
        direction=st.sampled_from(["ingress", "egress"]),
        block=blocks(),
        protocol=st.sampled_from(["TCP", "TCP", "UDP"]),
        port=st.sampled_from(PORTS),
        default_accept=st.booleans(),
        local=st.sampled_from([MEMBER, OTHER_MEMBER]),
    )
    def test_admits_a_block_exactly_when_every_address_is_admitted(
        self, data, direction, block, protocol, port, default_accept, local
    ):
        # given
        given_rules = data.draw(rule_lists(direction, block))
        # when
        verdict = netcheck.evaluate(
            given_rules,
            direction=direction,
            peer_cidr=block,
            protocol=protocol,
            port=port,
            local_ip=local,
            default_accept=default_accept,
        )
        # then
        model = model_block(
            given_rules,
            block,
            direction=direction,
            protocol=protocol,
            port=port,
            local=local,
            default_accept=default_accept,
        )
        assert verdict.allowed == model["admitted"], (verdict, model)

    @SETTINGS
    @given(data=st.data(), block=blocks(), port=st.sampled_from(PORTS))
    def test_accept_rules_admit_a_block_only_when_together_they_cover_all_of_it(self, data, block, port):
        # given only Accept rules, mostly for parts of the block
        given_rules = data.draw(rule_lists("ingress", block, policies=("Accept",), kinds=("inside",) * 4 + ("around",)))
        # when
        verdict = netcheck.evaluate(
            given_rules, direction="ingress", peer_cidr=block, protocol="TCP", port=port, local_ip=MEMBER
        )
        # then
        model = model_block(
            given_rules, block, direction="ingress", protocol="TCP", port=port, local=MEMBER, default_accept=False
        )
        assert verdict.allowed == model["admitted"], (verdict, model["undecided"][:3])
        assert verdict.allowed == (not model["undecided"])

    @SETTINGS
    @given(
        data=st.data(),
        direction=st.sampled_from(["ingress", "egress"]),
        block=blocks(),
        protocol=st.sampled_from(["TCP", "TCP", "UDP"]),
        port=st.sampled_from(PORTS),
        default_accept=st.booleans(),
        local=st.sampled_from([MEMBER, OTHER_MEMBER]),
    )
    def test_each_sampled_address_is_judged_as_the_model_judges_it(
        self, data, direction, block, protocol, port, default_accept, local
    ):
        # given rules and addresses sampled from the block
        given_rules = data.draw(rule_lists(direction, block))
        net = ipaddress.ip_network(block)
        offsets = data.draw(st.lists(st.integers(0, net.num_addresses - 1), min_size=1, max_size=8, unique=True))
        as_model = given_rules
        for offset in offsets:
            address = net.network_address + offset
            # when one address is the whole block
            verdict = netcheck.evaluate(
                given_rules,
                direction=direction,
                peer_cidr=f"{address}/32",
                protocol=protocol,
                port=port,
                local_ip=local,
                default_accept=default_accept,
            )
            # then
            model = model_block(
                as_model,
                f"{address}/32",
                direction=direction,
                protocol=protocol,
                port=port,
                local=local,
                default_accept=default_accept,
            )
            assert verdict.allowed == model["admitted"], (address, verdict)

    @LIGHT
    @given(data=st.data(), block=blocks(), port=st.sampled_from(PORTS))
    def test_a_denial_names_the_first_deciding_drop_or_the_undecided_part(self, data, block, port):
        # given ingress rules and the default deny
        given_rules = data.draw(rule_lists("ingress", block))
        # when
        verdict = netcheck.evaluate(
            given_rules, direction="ingress", peer_cidr=block, protocol="TCP", port=port, local_ip=MEMBER
        )
        # then
        as_model = given_rules
        model = model_block(
            as_model, block, direction="ingress", protocol="TCP", port=port, local=MEMBER, default_accept=False
        )
        assert verdict.allowed == model["admitted"]
        if verdict.allowed:
            return
        if model["drops"]:
            first = next(r for r in _order(as_model) if any(r is d for d in model["drops"]))
            assert verdict.rule_id == first["SecurityGroupRuleId"]
            assert "drops" in verdict.reason and verdict.uncovered == ""
        else:
            assert verdict.rule_id == ""
            undecided = list(ipaddress.collapse_addresses(model["undecided"]))
            if len(undecided) <= 3:
                assert verdict.uncovered == ", ".join(str(n) for n in undecided)

    @LIGHT
    @given(data=st.data(), block=blocks(), port=st.sampled_from(PORTS))
    def test_the_order_of_rules_of_one_precedence_does_not_change_the_verdict(self, data, block, port):
        given_rules = data.draw(rule_lists("ingress", block))
        shuffled = data.draw(st.permutations(given_rules))
        first = netcheck.evaluate(given_rules, direction="ingress", peer_cidr=block, port=port, local_ip=MEMBER)
        second = netcheck.evaluate(shuffled, direction="ingress", peer_cidr=block, port=port, local_ip=MEMBER)
        assert first.allowed == second.allowed

    @LIGHT
    @given(data=st.data(), block=blocks(), port=st.sampled_from(PORTS), local=st.sampled_from([MEMBER, OTHER_MEMBER]))
    def test_an_unknown_member_address_is_judged_conservatively(self, data, block, port, local):
        # given rules, some restricted to local addresses (quintuple rules)
        given_rules = data.draw(rule_lists("ingress", block))
        # when the member's address is not known
        unknown = netcheck.evaluate(given_rules, direction="ingress", peer_cidr=block, port=port, local_ip=None)
        # then admitting without it means admitting for any member address
        if unknown.allowed:
            model = model_block(
                given_rules, block, direction="ingress", protocol="TCP", port=port, local=local, default_accept=False
            )
            assert model["admitted"]

    @LIGHT
    @given(data=st.data(), block=blocks(), port=st.sampled_from(PORTS))
    def test_a_source_port_restriction_never_makes_it_admit_too_much(self, data, block, port):
        # given rules of which some only match some source ports (the builders' source ports are ephemeral)
        given_rules = data.draw(rule_lists("ingress", block))
        for rule in given_rules[::2]:
            rule["SourcePortRange"] = "1024/2048"
        # when
        verdict = netcheck.evaluate(given_rules, direction="ingress", peer_cidr=block, port=port, local_ip=MEMBER)
        # then: admitted means admitted from every source port; the model checks two of them
        if verdict.allowed:
            for source_port_inside in (True, False):
                applicable = [r for r in given_rules if source_port_inside or "SourcePortRange" not in r]
                model = model_block(
                    applicable,
                    block,
                    direction="ingress",
                    protocol="TCP",
                    port=port,
                    local=MEMBER,
                    default_accept=False,
                )
                assert model["admitted"], source_port_inside


class TestReverseAccessBlockExamples:
    """The cases the procedure cares about, through the model and through admits_ingress."""

    RULE = {
        "Direction": "ingress",
        "Policy": "Accept",
        "Priority": 1,
        "IpProtocol": "TCP",
        "PortRange": "80/80",
        "SourceCidrIp": "100.104.0.0/16",
        "SecurityGroupRuleId": "sgr-accept",
    }

    def test_a_24_inside_the_block_is_not_enough(self):
        rule = {**self.RULE, "SourceCidrIp": "100.104.3.0/24"}
        verdict = netcheck.admits_ingress([rule], port=80)
        assert not verdict.allowed and verdict.uncovered

    def test_drop_wins_at_equal_priority_and_loses_to_a_smaller_number(self):
        drop = {
            **self.RULE,
            "Policy": "Drop",
            "SecurityGroupRuleId": "sgr-drop",
            "IpProtocol": "ALL",
            "PortRange": "-1/-1",
        }
        assert not netcheck.admits_ingress([self.RULE, drop], port=80)
        assert netcheck.admits_ingress([self.RULE, {**drop, "Priority": 2}], port=80)
