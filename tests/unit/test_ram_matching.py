"""The product's RAM reader (acrvpc/domain/ram.py) and the sandbox's enforcement (acrvpc/sandbox/core/ram.py),
held against each other on hand-written cases (issue 19).

They share no code: each implements RAM's documented evaluation on its own (Deny wins, then Allow, else an
implicit deny; ``*`` and ``?`` wildcards; actions case-insensitive, resources not). Every row of the table
is a policy, a RAM action, a resource (``None``: the action alone) and the decision RAM documents; both
implementations must give it. So the proof "the whole suite passes under the generated policy" (the
sandbox enforcing) agrees with what the product reads the policy to allow.
"""

from __future__ import annotations

import pytest

from acrvpc.domain.ram import RamPolicyError, read_policy, wildcard_match
from acrvpc.sandbox.core.ram import PolicyError, RamPolicy

SG = "acs:ecs:cn-hangzhou:5123456789012345:securitygroup/sg-1"
ENI = "acs:ecs:cn-hangzhou:5123456789012345:networkinterface/eni-1"
REPO = "acs:cr:cn-hangzhou:5123456789012345:repository/cri-1/apps/web"


def doc(*statements):
    return {"Version": "1", "Statement": list(statements)}


def allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action, resource="*"):
    return {"Effect": "Deny", "Action": action, "Resource": resource}


CASES = [
    # (policy, action, resource, decision)
    (doc(), "ecs:DescribeVpcs", None, "ImplicitDeny"),
    (doc(allow("ecs:DescribeSecurityGroups")), "ecs:DescribeSecurityGroups", SG, "Allow"),
    (doc(allow("ecs:DescribeSecurityGroups")), "ecs:DeleteSecurityGroup", SG, "ImplicitDeny"),
    (doc(allow("*")), "cr:BuildRepositoryByRule", REPO, "Allow"),
    (doc(allow("ecs:*")), "vpc:DescribeVpcs", None, "ImplicitDeny"),
    (doc(allow("ecs:Describe*")), "ecs:DescribeNetworkInterfaces", ENI, "Allow"),
    (doc(allow("ecs:Describe*")), "ecs:Describe", ENI, "Allow"),  # * matches nothing too
    (doc(allow("ecs:Describe*")), "ecs:CreateNetworkInterface", ENI, "ImplicitDeny"),
    (doc(allow("ecs:*Attribute")), "ecs:DescribeSecurityGroupAttribute", SG, "Allow"),
    (doc(allow("ecs:*Group*")), "ecs:AuthorizeSecurityGroupEgress", SG, "Allow"),
    (doc(allow("ecs:DeleteSecurityGrou?")), "ecs:DeleteSecurityGroup", SG, "Allow"),
    (doc(allow("ecs:DeleteSecurityGrou?")), "ecs:DeleteSecurityGrou", SG, "ImplicitDeny"),  # ? is exactly one
    (doc(allow("ecs:Delete?")), "ecs:DeleteSecurityGroup", SG, "ImplicitDeny"),
    (doc(allow("ECS:describevpcs")), "ecs:DescribeVpcs", None, "Allow"),  # actions: case-insensitive
    (doc(allow("ecs:DescribeVpcs", SG.upper())), "ecs:DescribeVpcs", SG, "ImplicitDeny"),  # resources: exact
    (doc(allow("ecs:DescribeVpcs", SG.upper())), "ecs:DescribeVpcs", None, "Allow"),  # action alone
    (doc(allow("ecs:*"), deny("ecs:Delete*")), "ecs:DeleteSecurityGroup", SG, "ExplicitDeny"),
    (doc(deny("ecs:Delete*"), allow("ecs:*")), "ecs:DeleteSecurityGroup", SG, "ExplicitDeny"),  # order irrelevant
    (doc(allow("ecs:*"), deny("ecs:Delete*")), "ecs:DescribeSecurityGroups", SG, "Allow"),
    (doc(allow("ecs:*"), deny("ecs:*", ENI)), "ecs:DeleteSecurityGroup", SG, "Allow"),  # deny on another resource
    (doc(allow("ecs:*"), deny("ecs:*", ENI)), "ecs:DeleteNetworkInterface", ENI, "ExplicitDeny"),
    (doc(allow(["ecs:DescribeVpcs", "cr:GetRepository"])), "cr:GetRepository", REPO, "Allow"),
    (doc(allow("cr:*", "acs:cr:*:*:repository/cri-1/*")), "cr:GetRepository", REPO, "Allow"),
    (doc(allow("cr:*", "acs:cr:*:*:repository/cri-2/*")), "cr:GetRepository", REPO, "ImplicitDeny"),
    (doc(allow("cr:*", "acs:cr:cn-?angzhou:*:repository/*")), "cr:GetRepository", REPO, "Allow"),
    (doc(allow("cr:*", ["acs:cr:*:*:instance/*", REPO])), "cr:GetRepository", REPO, "Allow"),
    (doc({"Effect": "Allow", "NotAction": "ecs:Delete*", "Resource": "*"}), "ecs:CreateSecurityGroup", SG, "Allow"),
    (
        doc({"Effect": "Allow", "NotAction": "ecs:Delete*", "Resource": "*"}),
        "ecs:DeleteSecurityGroup",
        SG,
        "ImplicitDeny",
    ),
    (
        doc(allow("*"), {"Effect": "Deny", "NotAction": ["ecs:Describe*", "vpc:Describe*"], "Resource": "*"}),
        "ecs:DeleteSecurityGroup",
        SG,
        "ExplicitDeny",
    ),
    (
        doc(allow("*"), {"Effect": "Deny", "NotAction": ["ecs:Describe*", "vpc:Describe*"], "Resource": "*"}),
        "vpc:DescribeVpcs",
        None,
        "Allow",
    ),
    (doc({"Effect": "Allow", "Action": "ecs:*", "NotResource": ENI}), "ecs:DeleteSecurityGroup", SG, "Allow"),
    (
        doc({"Effect": "Allow", "Action": "ecs:*", "NotResource": ENI}),
        "ecs:DeleteNetworkInterface",
        ENI,
        "ImplicitDeny",
    ),
    (doc(allow("ecs:Describe[SV]*")), "ecs:DescribeVpcs", None, "ImplicitDeny"),  # [ ] is not a wildcard in RAM
    (doc(allow("ecs:Describe[SV]*")), "ecs:Describe[SV]pcs", None, "Allow"),
    (doc(allow("ecs:Describe.*")), "ecs:DescribeVpcs", None, "ImplicitDeny"),  # nor a regex
]


@pytest.mark.parametrize(
    "document, action, resource, expected", CASES, ids=[f"{i}-{c[1]}-{c[3]}" for i, c in enumerate(CASES)]
)
class TestBothDecideAlike:
    def test_the_products_reader(self, document, action, resource, expected):
        assert read_policy(document).decision(action, resource) == expected

    def test_the_sandboxs_enforcement(self, document, action, resource, expected):
        assert RamPolicy(document).decide(action, resource) == expected


MALFORMED = [
    # (document, the field the product's error names)
    ([], "(document)"),
    ("{not json", "(document)"),
    ({"Statement": []}, "Version"),
    ({"Version": "2", "Statement": []}, "Version"),
    ({"Version": "1"}, "Statement"),
    ({"Version": "1", "Statement": {"Effect": "Allow"}}, "Statement"),
    (doc("ecs:*"), "Statement[0]"),
    (doc({"Effect": "allow", "Action": "*", "Resource": "*"}), "Statement[0].Effect"),
    (doc(allow("*"), {"Action": "*", "Resource": "*"}), "Statement[1].Effect"),
    (doc({"Effect": "Allow", "Resource": "*"}), "Statement[0].Action"),
    (doc({"Effect": "Allow", "Action": "*", "NotAction": "ecs:*", "Resource": "*"}), "Statement[0].Action"),
    (doc({"Effect": "Allow", "Action": "*"}), "Statement[0].Resource"),
    (doc({"Effect": "Allow", "Action": [], "Resource": "*"}), "Statement[0].Action"),
    (doc({"Effect": "Allow", "Action": ["ecs:*", 3], "Resource": "*"}), "Statement[0].Action"),
    (doc({"Effect": "Allow", "Action": "*", "Resource": "*", "Actions": "x"}), "Statement[0].Actions"),
    (
        doc(
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {"acs:SecureTransport": "true"}}}
        ),
        "Statement[0].Condition",
    ),
]


@pytest.mark.parametrize("document, field", MALFORMED, ids=[f for _, f in MALFORMED])
class TestBothRefuseAlike:
    def test_the_products_reader_names_the_field(self, document, field):
        with pytest.raises(RamPolicyError) as caught:
            read_policy(document)
        assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")

    def test_the_sandbox_refuses_it_too(self, document, field):
        with pytest.raises(PolicyError):
            RamPolicy(document)


class TestWildcardMatch:
    @pytest.mark.parametrize(
        "pattern, text, hit",
        [
            ("*", "", True),
            ("", "", True),
            ("", "a", False),
            ("a*b*c", "abbbc", True),
            ("a*b*c", "acb", False),
            ("*a", "bbba", True),
            ("a?c", "abc", True),
            ("a?c", "ac", False),
            ("**", "x", True),
            ("a*a*a*a*b", "a" * 40, False),  # backtracking stays linear-ish, no regex blow-up
        ],
    )
    def test_star_and_question_mark(self, pattern, text, hit):
        assert wildcard_match(pattern, text) is hit


class TestTheGeneratedPolicy:
    def test_the_product_reads_the_generated_policy_as_allowing_every_declared_action(self):
        """Given the policy `acrvpc policy` writes for the example spec, the reader allows each of its actions."""
        from acrvpc.domain.policy import policy_actions, policy_for
        from acrvpc.domain.spec import load_spec
        from tests.conftest import EXAMPLE_SPEC

        policy = policy_for(load_spec(EXAMPLE_SPEC), with_fix=True, with_teardown=True)
        read = read_policy(policy)
        actions = sorted(policy_actions(policy))
        assert actions and read.refused(actions) == []
        assert read.refused(["ecs:DeleteVpc", "ram:CreateUser"]) == ["ecs:DeleteVpc", "ram:CreateUser"]
