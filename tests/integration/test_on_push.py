"""What a push needs: the routed repository's binding verified without writing (against the sandbox)."""

from __future__ import annotations

import pytest

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.spec import route_target
from tasks.binding import bind_repository
from tasks.on_push import verify_binding


def writes_since(sandbox, seq: int) -> list[str]:
    return [c["action"] for c in sandbox.world.calls.list(seq) if c["writes"]]


class TestVerifyBinding:
    def test_a_bound_repository_gives_the_routed_rule_without_writing(self, sandbox, spec):
        # Given the full pipeline bound web-frontend and its rules
        cr = cloud.cloud_clients(spec).cr
        repo, rule = route_target(spec, spec.webhook.routes[2])  # tags release-v* -> apps/web-frontend:release
        bound = bind_repository(cr, spec, repo)
        seq = len(sandbox.world.calls.list())
        # When a push verifies it
        binding, bound_rule = verify_binding(cr, spec, repo, rule)
        # Then it gets the repository and the rule's id, and wrote nothing
        assert binding.repo_id == bound.repo_id and binding.changes == []
        assert bound_rule == bound.rules[1] and bound_rule.image_tag == "release"
        assert writes_since(sandbox, seq) == []

    def test_an_unbound_repository_fails_with_the_fix_and_writes_nothing(self, sandbox, spec):
        repo, rule = route_target(spec, spec.webhook.routes[0])
        with pytest.raises(PipelineError) as caught:
            verify_binding(cloud.cloud_clients(spec).cr, spec, repo, rule)
        assert caught.value.code == "BINDING_NOT_CONVERGED"
        assert "CreateRepository apps/billing-api" in str(caught.value)
        assert "vpc-build/nightly" in caught.value.fix
        assert writes_since(sandbox, 0) == []

    def test_a_missing_build_rule_is_not_converged(self, sandbox, spec):
        # Given a bound repository whose spec gained a rule the pipeline has not created yet
        cr = cloud.cloud_clients(spec).cr
        repo, rule = route_target(spec, spec.webhook.routes[0])
        bind_repository(cr, spec, repo)
        grown = repo.model_copy(
            update={
                "build_rules": [*repo.build_rules, rule.model_copy(update={"push_name": "develop", "image_tag": "dev"})]
            }
        )
        seq = len(sandbox.world.calls.list())
        with pytest.raises(PipelineError) as caught:
            verify_binding(cr, spec, grown, rule)
        assert caught.value.code == "BINDING_NOT_CONVERGED" and "CreateRepoBuildRule" in str(caught.value)
        assert writes_since(sandbox, seq) == []


@pytest.mark.e2e
class TestBuildOnPushFlow:
    def test_a_push_no_route_takes_fails_before_any_call(self, prefect_harness, sandbox):
        from flows.on_push import build_on_push
        from tests.conftest import EXAMPLE_SPEC

        with pytest.raises(PipelineError) as caught:
            build_on_push(spec_path=str(EXAMPLE_SPEC), project="platform/billing-api", ref="refs/heads/feature")
        assert caught.value.code == "WEBHOOK_NO_ROUTE"
        assert sandbox.world.calls.list() == []
