"""Contract: stage webhook (tasks.webhook_hook.ensure_project_hooks) against GitLab's documented answers.

Endpoints: GET /projects/:id/hooks, POST /projects/:id/hooks, PUT /projects/:id/hooks/:hook_id
(the documented project webhook entity); errors 403 (not Maintainer), 404 (no such project) and
422 (URL blocked).
"""

from __future__ import annotations

import pytest

from acrvpc.cloud.errors import PipelineError
from tasks.webhook_hook import ensure_project_hooks
from tests.contract.support import case, cassette

PROJECT = "platform/billing-api"
SECRET = "contract-webhook-secret"


class TestEnsureProjectHooks:
    @cassette("stages/webhook/create.success.yaml")
    def test_missing_hook_is_created(self, gitlab_client, contract_spec):
        # given no hook, then GitLab's documented webhook (id 1) answering the create
        # when
        outcome = ensure_project_hooks(gitlab_client, contract_spec, SECRET)
        # then
        assert outcome.changes == [f"CreateProjectHook {PROJECT} 1 -> {contract_spec.webhook.url}"]
        assert outcome.resources == {PROJECT: "hook 1"}

    @cassette("stages/webhook/converged.success.yaml")
    def test_documented_hook_at_the_url_is_converged(self, gitlab_client, contract_spec):
        # given the documented webhook: the spec's URL, push and tag push events, TLS verification
        # when
        outcome = ensure_project_hooks(gitlab_client, contract_spec, SECRET)
        # then
        assert outcome.changes == []
        assert outcome.resources == {PROJECT: "hook 1"}

    @cassette("stages/webhook/drift.success.yaml")
    def test_hook_without_tag_push_events_is_updated(self, gitlab_client, contract_spec):
        # given the documented webhook with tag_push_events false
        # when
        outcome = ensure_project_hooks(gitlab_client, contract_spec, SECRET)
        # then
        assert outcome.changes == [f"UpdateProjectHook {PROJECT} 1 (tag_push_events false)"]
        assert SECRET not in str(outcome)

    @pytest.mark.parametrize(
        "code",
        [
            case("stages/webhook/list.403.yaml", "WEBHOOK_HOOK_FORBIDDEN"),
            case("stages/webhook/list.404-project.yaml", "GITLAB_PROJECT_NOT_FOUND"),
            case("stages/webhook/create.422-url-blocked.yaml", "WEBHOOK_URL_REJECTED"),
            case("stages/webhook/update.403.yaml", "WEBHOOK_HOOK_FORBIDDEN"),
        ],
    )
    def test_documented_errors_raise_their_code(self, code, gitlab_client, contract_spec):
        # given a documented GitLab error answer
        # when
        with pytest.raises(PipelineError) as caught:
            ensure_project_hooks(gitlab_client, contract_spec, SECRET)
        # then
        assert caught.value.code == code
        assert SECRET not in str(caught.value)
