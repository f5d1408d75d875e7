"""Contract: stage gitlab (tasks.gitlab_token.validate_token) against GitLab's documented answers.

Endpoints: GET /user (gl.auth()), GET /personal_access_tokens/self, GET /projects/:id; errors
401 (unknown token), 401 invalid_token (revoked), 404 for /personal_access_tokens/self (GitLab
before 15.5), 403 insufficient_scope and 404 on the project.
"""

from __future__ import annotations

from datetime import date

import pytest

from acrvpc.cloud.errors import PipelineError
from tasks.gitlab_token import validate_token
from tests.contract.support import case, cassette

TODAY = date(2024, 3, 1)


class TestValidateToken:
    @pytest.mark.recordable
    @cassette("stages/gitlab/success.yaml")
    def test_documented_user_token_and_project(self, gitlab_client, contract_spec):
        # given GitLab's documented user, token and project
        # when
        outcome = validate_token(gitlab_client, contract_spec, today=TODAY)
        # then
        assert outcome.username == contract_spec.gitlab.username
        assert "api" in outcome.scopes
        assert set(outcome.projects) == {r.gitlab_project for r in contract_spec.repositories}

    @cassette("stages/gitlab/success.yaml")
    def test_documented_values_reach_the_outcome(self, gitlab_client, contract_spec):
        # given the documented answers (john_smith, id 1; token "Test Token" with api, no expiry; project id 3
        # where the user is Guest in the project and Owner in its group)
        # when
        outcome = validate_token(gitlab_client, contract_spec, today=TODAY)
        # then
        assert (outcome.username, outcome.user_id) == ("john_smith", 1)
        assert outcome.scopes == ["api"]
        assert outcome.expires_at is None
        assert outcome.projects == {"platform/billing-api": 3}
        assert outcome.notes == []

    @cassette("stages/gitlab/token.404-route.yaml")
    def test_gitlab_without_self_endpoint_is_a_note(self, gitlab_client, contract_spec):
        # given a GitLab before 15.5: GET /personal_access_tokens/self answers 404 {"error": "404 Not Found"}
        # when
        outcome = validate_token(gitlab_client, contract_spec, today=TODAY)
        # then
        assert outcome.scopes == []
        assert any("did not describe the token" in note for note in outcome.notes)
        assert outcome.projects == {"platform/billing-api": 3}

    @pytest.mark.parametrize(
        "code",
        [
            case("stages/gitlab/user.401.yaml", "GITLAB_TOKEN_INVALID"),
            case("stages/gitlab/user.401-revoked.yaml", "GITLAB_TOKEN_INVALID"),
            case("stages/gitlab/project.403-insufficient_scope.yaml", "GITLAB_TOKEN_SCOPE"),
            case("stages/gitlab/project.404-project.yaml", "GITLAB_PROJECT_NOT_FOUND"),
        ],
    )
    def test_documented_errors_raise_their_code(self, code, gitlab_client, contract_spec):
        # given a documented GitLab error answer
        # when
        with pytest.raises(PipelineError) as caught:
            validate_token(gitlab_client, contract_spec, today=TODAY)
        # then
        assert caught.value.code == code
        assert not caught.value.retryable
        assert "contract-token" not in str(caught.value)

    @cassette("stages/gitlab/user.401-revoked.yaml")
    def test_revoked_token_reason_comes_from_error_description(self, gitlab_client, contract_spec):
        # given GitLab's invalid_token answer for a revoked token
        # when
        with pytest.raises(PipelineError) as caught:
            validate_token(gitlab_client, contract_spec, today=TODAY)
        # then
        assert "Token was revoked" in str(caught.value)
