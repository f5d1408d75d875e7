"""tasks/binding.py against the sandbox, through the real CR client built by acrvpc.cloud.clients."""

from __future__ import annotations

import pytest
import requests
from alibabacloud_cr20181201 import models as m

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import CrBusinessError, PipelineError
from acrvpc.sandbox.cr.errors import NamespaceNotExist
from tasks.binding import bind_repository

INSTANCE = "cri-sandbox0demo0001"


@pytest.fixture
def cr(sandbox, spec):
    return cloud.cloud_clients(spec).cr


def calls(sandbox, since: int = 0) -> list[dict]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", params={"since": since}, timeout=5).json()["calls"]


def writes(sandbox, since: int = 0) -> list[str]:
    return [c["action"] for c in calls(sandbox, since) if c["writes"]]


def last_seq(sandbox) -> int:
    seen = calls(sandbox)
    return seen[-1]["seq"] if seen else 0


def source(cr, repo_id):
    return cr.get_repo_source_code_repo(m.GetRepoSourceCodeRepoRequest(instance_id=INSTANCE, repo_id=repo_id)).body


class TestFirstRun:
    def test_creates_namespace_repository_source_and_rules(self, sandbox, spec, cr):
        # given an empty instance
        repo = spec.repositories[0]
        # when
        outcome = bind_repository(cr, spec, repo)
        # then
        assert writes(sandbox) == [
            "CreateNamespace",
            "CreateRepository",
            "CreateRepoSourceCodeRepo",
            "CreateRepoBuildRule",
        ]
        assert len(outcome.changes) == 4
        assert outcome.repo_id.startswith("crr-") and outcome.full_name == "apps/billing-api"
        assert outcome.gitlab_project == "platform/billing-api"
        [rule] = outcome.rules
        assert (rule.push_type, rule.push_name, rule.image_tag, rule.build) == ("GIT_BRANCH", "main", "latest", True)
        assert outcome.resources == {"repository": f"apps/billing-api ({outcome.repo_id})", "rules": rule.build_rule_id}
        bound = source(cr, outcome.repo_id)
        assert (bound.code_repo_namespace_name, bound.code_repo_name, bound.oversea_build) == (
            "platform",
            "billing-api",
            "false",
        )
        summary = cr.get_repository(m.GetRepositoryRequest(instance_id=INSTANCE, repo_id=outcome.repo_id)).body.summary
        assert summary == "platform/billing-api"

    def test_rule_flags_and_order(self, sandbox, spec, cr):
        outcome = bind_repository(cr, spec, spec.repositories[1])
        assert [(r.push_type, r.push_name, r.build) for r in outcome.rules] == [
            ("GIT_BRANCH", "main", True),
            ("GIT_TAG", "release-v*", False),
        ]
        assert outcome.resources["rules"] == ",".join(r.build_rule_id for r in outcome.rules)


class TestSecondRun:
    def test_converged_world_makes_zero_writes(self, sandbox, spec, cr):
        # given both repositories bound once
        first = [bind_repository(cr, spec, repo) for repo in spec.repositories]
        mark = last_seq(sandbox)
        # when
        second = [bind_repository(cr, spec, repo) for repo in spec.repositories]
        # then
        assert writes(sandbox, mark) == []
        assert all(o.changes == [] for o in second)
        assert [o.repo_id for o in second] == [o.repo_id for o in first]
        rule_ids = [[r.build_rule_id for r in o.rules] for o in first]
        assert [[r.build_rule_id for r in o.rules] for o in second] == rule_ids

    def test_existing_rule_is_found_on_a_later_page(self, sandbox, spec, cr):
        # given a repository whose matching rule comes after 100 others
        repo = spec.repositories[0]
        first = bind_repository(cr, spec, repo)
        stored = sandbox.world.cr.repos[first.repo_id]
        kept = stored.rules.pop(first.rules[0].build_rule_id)
        for i in range(100):
            sandbox.world.cr.add_rule(stored, "GIT_TAG", f"v{i}", f"t{i}")
        stored.rules[kept.build_rule_id] = kept
        mark = last_seq(sandbox)
        # when
        again = bind_repository(cr, spec, repo)
        # then
        assert writes(sandbox, mark) == []
        assert again.rules[0].build_rule_id == kept.build_rule_id
        pages = [c["params"].get("PageNo") for c in calls(sandbox, mark) if c["action"] == "ListRepoBuildRule"]
        assert pages == ["1", "2"]


class TestNamespaceRace:
    def test_namespace_created_by_another_binding_counts_as_success(self, sandbox, spec, cr, monkeypatch):
        # given another writer creates the namespace between our GetNamespace and CreateNamespace
        world = sandbox.world
        original = world.cr.namespace
        state = {"first": True}

        def namespace(instance_id, name=None, namespace_id=None):
            if state["first"]:
                state["first"] = False
                world.cr.add_namespace(instance_id, name)
                raise NamespaceNotExist(name)
            return original(instance_id, name, namespace_id)

        monkeypatch.setattr(world.cr, "namespace", namespace)
        # when
        outcome = bind_repository(cr, spec, spec.repositories[0])
        # then
        refused = [c for c in calls(sandbox) if c["action"] == "CreateNamespace"]
        assert [c["code"] for c in refused] == ["NAMESPACE_ALREADY_EXIST"]
        assert not any(change.startswith("CreateNamespace") for change in outcome.changes)
        assert outcome.repo_id


class TestDrift:
    def test_oversea_build_is_turned_off(self, sandbox, spec, cr):
        # given a bound repository whose OverseaBuild was switched on in the console
        repo = spec.repositories[0]
        first = bind_repository(cr, spec, repo)
        sandbox.world.cr.repos[first.repo_id].source.oversea_build = True
        mark = last_seq(sandbox)
        # when
        outcome = bind_repository(cr, spec, repo)
        # then
        assert writes(sandbox, mark) == ["UpdateRepoSourceCodeRepo"]
        update = next(c for c in calls(sandbox, mark) if c["action"] == "UpdateRepoSourceCodeRepo")
        assert (update["params"]["OverseaBuild"], update["params"]["AutoBuild"]) == ("false", "false")
        assert source(cr, first.repo_id).oversea_build == "false"
        assert len(outcome.changes) == 1 and "OverseaBuild" in outcome.changes[0]

    def test_binding_to_another_project_is_repointed(self, sandbox, spec, cr):
        repo = spec.repositories[0]
        first = bind_repository(cr, spec, repo)
        sandbox.world.cr.repos[first.repo_id].source.name = "web-frontend"
        bind_repository(cr, spec, repo)
        assert source(cr, first.repo_id).code_repo_name == "billing-api"

    def test_auto_build_follows_the_spec(self, sandbox, spec, cr):
        repo = spec.repositories[0].model_copy(update={"auto_build": True})
        first = bind_repository(cr, spec, spec.repositories[0])
        bind_repository(cr, spec, repo)
        assert source(cr, first.repo_id).auto_build == "true"


class TestErrors:
    def test_account_not_bound(self, sandbox, spec, cr):
        sandbox.world.cr.unbind_code_source(INSTANCE, "GITLAB")
        with pytest.raises(PipelineError) as err:
            bind_repository(cr, spec, spec.repositories[0])
        assert err.value.code == "GITLAB_ACCOUNT_NOT_BOUND"
        assert "Code Source" in err.value.fix and spec.gitlab.endpoint in err.value.fix
        assert spec.gitlab.username in err.value.fix and "link.mode: console" in err.value.fix

    def test_endpoint_mismatch(self, sandbox, spec, cr):
        sandbox.world.cr.bind_code_source(INSTANCE, "GITLAB", "http://10.0.0.9", "release-bot")
        with pytest.raises(PipelineError) as err:
            bind_repository(cr, spec, spec.repositories[0])
        assert err.value.code == "GITLAB_ENDPOINT_MISMATCH"
        assert "http://10.0.0.9" in str(err.value)

    def test_unknown_gitlab_project(self, sandbox, spec, cr):
        repo = spec.repositories[0].model_copy(update={"gitlab_project": "platform/nope"})
        with pytest.raises(PipelineError) as err:
            bind_repository(cr, spec, repo)
        assert err.value.code == "CODE_REPO_NOT_EXIST"

    def test_unknown_instance(self, sandbox, spec, cr):
        wrong = spec.model_copy(update={"instance_id": "cri-doesnotexist01"})
        with pytest.raises(CrBusinessError) as err:
            bind_repository(cr, wrong, wrong.repositories[0])
        assert err.value.code == "INSTANCE_NOT_EXIST"
        assert writes(sandbox) == []
