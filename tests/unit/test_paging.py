"""The pager (acrvpc.cloud.paging): every page of a listing, lazily, against the sandbox's paging."""

from __future__ import annotations

import itertools
import logging

import pytest
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_ecs20140526 import models as ecs_models

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import check_cr
from acrvpc.cloud.paging import paginate
from tasks.binding import ensure_build_rules, ensure_namespace, ensure_repository
from tasks.link import ensure_security_group


def calls(sandbox, action: str) -> int:
    return sum(1 for c in sandbox.world.calls.list() if c["action"] == action)


@pytest.fixture
def ecs(sandbox, spec):
    return cloud.cloud_clients(spec).ecs


@pytest.fixture
def groups(ecs, spec) -> list[str]:
    """Given the link's group beside the scenario's own: the VPC's groups, listed in one call."""
    ensure_security_group(ecs, spec)
    body = ecs.describe_security_groups(
        ecs_models.DescribeSecurityGroupsRequest(region_id=spec.region, vpc_id=spec.network.vpc_id, max_results=100)
    ).body
    ids = [g.security_group_id for g in body.security_groups.security_group]
    assert len(ids) >= 2, "the test needs a listing of more than one page of one item"
    return ids


def security_groups(ecs, spec, size: int):
    def fetch(token):
        return ecs.describe_security_groups(
            ecs_models.DescribeSecurityGroupsRequest(
                region_id=spec.region, vpc_id=spec.network.vpc_id, max_results=size, next_token=token
            )
        ).body

    return paginate(
        fetch, lambda b: b.security_groups.security_group if b.security_groups else [], what="DescribeSecurityGroups"
    )


class TestTokenPaging:
    def test_every_page_of_a_listing_is_read(self, sandbox, ecs, spec, groups):
        # given a page size of one item
        before = calls(sandbox, "DescribeSecurityGroups")
        # when every item is taken
        found = [g.security_group_id for g in security_groups(ecs, spec, 1)]
        # then each group comes once, in the server's order, one call per page
        assert found == groups
        assert calls(sandbox, "DescribeSecurityGroups") - before == len(groups)

    def test_items_come_lazily(self, sandbox, ecs, spec, groups):
        before = calls(sandbox, "DescribeSecurityGroups")
        first = list(itertools.islice(security_groups(ecs, spec, 1), 1))
        assert [g.security_group_id for g in first] == groups[:1]
        assert calls(sandbox, "DescribeSecurityGroups") - before == 1

    def test_dict_bodies_page_too(self, ecs, spec, groups):
        def fetch(token):
            return ecs.describe_security_groups(
                ecs_models.DescribeSecurityGroupsRequest(
                    region_id=spec.region, vpc_id=spec.network.vpc_id, max_results=1, next_token=token
                )
            ).body.to_map()

        found = paginate(fetch, lambda b: (b.get("SecurityGroups") or {}).get("SecurityGroup"), what="x")
        assert [g["SecurityGroupId"] for g in found] == groups

    def test_a_repeated_token_ends_the_listing(self, sandbox, ecs, spec, groups, caplog):
        # given a server that answers the same NextToken again (here: the first page asked for each time)
        def fetch(token):
            return ecs.describe_security_groups(
                ecs_models.DescribeSecurityGroupsRequest(
                    region_id=spec.region, vpc_id=spec.network.vpc_id, max_results=1
                )
            ).body

        before = calls(sandbox, "DescribeSecurityGroups")
        # when the listing is read
        with caplog.at_level(logging.WARNING, logger="acrvpc.cloud.paging"):
            found = list(paginate(fetch, lambda b: b.security_groups.security_group, what="the looping listing"))
        # then it stops at the repeat instead of looping forever, and says so
        assert calls(sandbox, "DescribeSecurityGroups") - before == 2
        assert [g.security_group_id for g in found] == [groups[0], groups[0]]
        assert "the looping listing" in caplog.text and "second time" in caplog.text

    def test_an_unknown_style_is_refused(self):
        with pytest.raises(ValueError, match="by must be 'token' or 'page'"):
            list(paginate(lambda _: {}, lambda b: [], what="x", by="offset"))  # type: ignore[arg-type]


class TestPageNumberPaging:
    def test_every_page_until_total_count(self, sandbox, spec):
        # given a repository with two build rules
        cr = cloud.cloud_clients(spec).cr
        repo = next(r for r in spec.repositories if len(r.build_rules) >= 2)
        changes: list[str] = []
        ensure_namespace(cr, spec, repo, changes)
        repo_id = ensure_repository(cr, spec, repo, changes)
        ensure_build_rules(cr, spec, repo, repo_id, changes, [])
        before = calls(sandbox, "ListRepoBuildRule")

        # when they are listed one per page
        def fetch(page):
            return check_cr(
                cr.list_repo_build_rule(
                    cr_models.ListRepoBuildRuleRequest(
                        instance_id=spec.instance_id, repo_id=repo_id, page_no=page, page_size=1
                    )
                ),
                "ListRepoBuildRule",
            )

        rules = list(paginate(fetch, lambda b: b.build_rules, what="ListRepoBuildRule", by="page"))

        # then both come, in two calls (TotalCount reached: no third, empty page is asked for)
        assert sorted(r.push_name for r in rules) == sorted(r.push_name for r in repo.build_rules)
        assert calls(sandbox, "ListRepoBuildRule") - before == len(repo.build_rules)
