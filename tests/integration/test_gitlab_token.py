"""Stage "gitlab" (tasks/gitlab_token.py) against the sandbox GitLab with python-gitlab."""

from __future__ import annotations

import copy
import socket
from datetime import timedelta
from typing import Any

import pytest
import requests

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError, is_retryable
from acrvpc.domain.spec import Spec
from tasks.gitlab_token import gitlab_token, validate_token

BOT = "glpat-sandbox-release-bot-0001"
TOKENS = {
    "read_user": "glpat-sandbox-read-user-00001",
    "expired": "glpat-sandbox-expired-000001",
    "revoked": "glpat-sandbox-revoked-000001",
    "alice": "glpat-sandbox-alice-0000001",
    "unknown": "glpat-not-a-known-token-0001",
    "soon": "glpat-sbx-test-expires-soon01",
    "inactive": "glpat-sbx-test-inactive-0001",
    "repo_only": "glpat-sbx-test-repo-only-001",
}


@pytest.fixture
def world(sandbox):
    """The default world plus tokens for the expiry note, the inactive state and a repository-only scope."""
    scenario = copy.deepcopy(sandbox.world.scenario)
    scenario["gitlab"]["tokens"] += [
        {"token": TOKENS["soon"], "user": "release-bot", "name": "soon", "scopes": ["api"], "expires_in_days": 5},
        {
            "token": TOKENS["inactive"],
            "user": "release-bot",
            "name": "inactive",
            "scopes": ["api"],
            "expires_in_days": 30,
            "active": False,
        },
        {
            "token": TOKENS["repo_only"],
            "user": "release-bot",
            "name": "repo-only",
            "scopes": ["read_repository"],
            "expires_in_days": 30,
        },
    ]
    scenario["gitlab"]["projects"].append(
        {
            "id": 46,
            "path_with_namespace": "platform/guest-only",
            "visibility": "private",
            "members": {"release-bot": 10},
        }
    )
    sandbox.world.reset(scenario)
    return sandbox


def use_token(monkeypatch: pytest.MonkeyPatch, name: str) -> str:
    token = TOKENS[name]
    monkeypatch.setenv("ACRVPC_GITLAB_TOKEN", token)
    return token


def with_projects(spec: Spec, *paths: str, **gitlab: Any) -> Spec:
    """The spec with one repository per GitLab project path, and ``gitlab.*`` overrides."""
    repos = [
        spec.repositories[0].model_copy(update={"name": f"repo-{i}", "gitlab_project": p}) for i, p in enumerate(paths)
    ] or list(spec.repositories)
    return spec.model_copy(update={"repositories": repos, "gitlab": spec.gitlab.model_copy(update=gitlab)})


def fail(spec: Spec, token: str | None = None, **kw: Any) -> PipelineError:
    with pytest.raises(PipelineError) as err:
        validate_token(cloud.gitlab_for(spec), spec, **kw)
    if token:
        assert token not in str(err.value) and token not in err.value.fix
    return err.value


def calls(sandbox) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]


class TestValidToken:
    def test_passes_with_user_scopes_and_projects(self, world, spec):
        # given the default spec and the release-bot token (api, read_repository; 180 days)
        # when validating
        out = validate_token(cloud.gitlab_for(spec), spec)
        # then the outcome names the user, the token and each project's id
        today = world.world.gitlab.today()
        assert (out.stage, out.username, out.user_id) == ("gitlab", "release-bot", 7)
        assert out.scopes == ["api", "read_repository"]
        assert out.expires_at == (today + timedelta(days=180)).isoformat()
        assert out.projects == {"platform/billing-api": 42, "platform/web-frontend": 43}
        assert out.resources["user"] == "release-bot"
        assert "platform/billing-api (id 42)" in out.resources["projects"]
        assert out.changes == [] and out.notes == []

    def test_makes_only_reads(self, world, spec):
        validate_token(cloud.gitlab_for(spec), spec)
        log = calls(world)
        assert [c["action"] for c in log] == [
            "GET /user",
            "GET /personal_access_tokens/self",
            "GET /projects/:id",
            "GET /projects/:id",
        ]
        assert not any(c["writes"] for c in log)

    def test_task_builds_its_client_from_the_spec(self, world, spec):
        out = gitlab_token.fn(spec)
        assert out.username == "release-bot" and out.projects["platform/web-frontend"] == 43

    def test_broader_scope_satisfies_narrower_required_ones(self, world, spec):
        narrow = with_projects(spec, required_scopes=["read_api", "read_repository"])
        out = validate_token(cloud.gitlab_for(spec), narrow)
        assert "api" in out.scopes

    def test_maintainer_passes_with_register_webhook(self, world, spec):
        out = validate_token(cloud.gitlab_for(spec), with_projects(spec, "platform/billing-api", register_webhook=True))
        assert out.projects == {"platform/billing-api": 42}

    def test_username_matches_case_insensitively(self, world, spec):
        out = validate_token(cloud.gitlab_for(spec), with_projects(spec, username="Release-Bot"))
        assert out.username == "release-bot"

    def test_note_when_the_token_expires_within_14_days(self, world, spec, monkeypatch):
        use_token(monkeypatch, "soon")
        out = validate_token(cloud.gitlab_for(spec), spec)
        assert len(out.notes) == 1 and "in 5 day(s)" in out.notes[0]
        assert "/-/user_settings/personal_access_tokens" in out.notes[0]

    def test_expiry_note_threshold_includes_14_days(self, world, spec):
        # given the default token (180 days), judged 166 days later: 14 days left
        later = world.world.gitlab.today() + timedelta(days=166)
        out = validate_token(cloud.gitlab_for(spec), spec, today=later)
        assert len(out.notes) == 1 and "in 14 day(s)" in out.notes[0]


class TestTokenFailures:
    def test_unknown_token_is_invalid(self, world, spec, monkeypatch):
        token = use_token(monkeypatch, "unknown")
        err = fail(spec, token)
        assert err.code == "GITLAB_TOKEN_INVALID" and "401 Unauthorized" in str(err)
        assert "gitlab.token_block" in err.fix and not err.retryable

    def test_revoked_token_is_invalid_and_says_revoked(self, world, spec, monkeypatch):
        token = use_token(monkeypatch, "revoked")
        err = fail(spec, token)
        assert err.code == "GITLAB_TOKEN_INVALID" and "Token was revoked" in str(err)

    def test_expired_token_is_invalid_and_says_expired(self, world, spec, monkeypatch):
        token = use_token(monkeypatch, "expired")
        err = fail(spec, token)
        assert err.code == "GITLAB_TOKEN_INVALID" and "Token has expired." in str(err)

    def test_token_of_another_user(self, world, spec, monkeypatch):
        token = use_token(monkeypatch, "alice")
        err = fail(spec, token)
        assert err.code == "GITLAB_USER_MISMATCH" and "'alice'" in str(err) and "gitlab.username" in str(err)

    def test_read_user_token_lacks_api_scope(self, world, spec, monkeypatch):
        token = use_token(monkeypatch, "read_user")
        err = fail(spec, token)
        assert err.code == "GITLAB_TOKEN_SCOPE" and "lacks scope(s) api" in str(err)
        assert "gitlab.required_scopes" in err.fix

    def test_repository_only_token_cannot_serve_the_pipeline(self, world, spec, monkeypatch):
        # given a token whose only scope is the one the spec requires, but no API read access
        token = use_token(monkeypatch, "repo_only")
        err = fail(with_projects(spec, required_scopes=["read_repository"]), token)
        assert err.code == "GITLAB_TOKEN_SCOPE" and "read_api" in str(err)

    def test_inactive_token(self, world, spec, monkeypatch):
        token = use_token(monkeypatch, "inactive")
        err = fail(spec, token)
        assert err.code == "GITLAB_TOKEN_INACTIVE"

    def test_token_past_its_date_by_the_client_clock(self, world, spec):
        # given a token GitLab still accepts, judged on a date after its expiry
        later = world.world.gitlab.today() + timedelta(days=181)
        err = fail(spec, BOT, today=later)
        assert err.code == "GITLAB_TOKEN_EXPIRED" and "/-/user_settings/personal_access_tokens" in err.fix


class TestProjectFailures:
    def test_missing_project(self, world, spec):
        err = fail(with_projects(spec, "platform/billing-api", "platform/nope"))
        assert err.code == "GITLAB_PROJECT_NOT_FOUND"
        assert "platform/nope (repositories[1].gitlab_project)" in str(err)

    def test_private_project_without_membership_is_not_found(self, world, spec):
        err = fail(with_projects(spec, "secret/vault-tools"))
        assert err.code == "GITLAB_PROJECT_NOT_FOUND" and "secret/vault-tools" in str(err)

    def test_developer_is_not_enough_with_register_webhook(self, world, spec):
        # given release-bot: Maintainer of billing-api, Developer of web-frontend
        err = fail(with_projects(spec, register_webhook=True))
        assert err.code == "GITLAB_PROJECT_ACCESS"
        assert "platform/web-frontend" in str(err) and "platform/billing-api" not in str(err)
        assert "Maintainer" in str(err) and "web-frontend/-/project_members" in err.fix

    def test_guest_is_below_reporter(self, world, spec):
        err = fail(with_projects(spec, "platform/guest-only"))
        assert err.code == "GITLAB_PROJECT_ACCESS" and "Guest (10)" in str(err) and "Reporter (20)" in str(err)

    def test_all_problems_are_listed_at_once(self, world, spec):
        err = fail(
            with_projects(spec, "platform/nope", "secret/vault-tools", "platform/web-frontend", register_webhook=True)
        )
        assert err.code == "GITLAB_PROJECT_NOT_FOUND"
        assert "3 GitLab project problem(s)" in str(err)
        for path in ("platform/nope", "secret/vault-tools", "platform/web-frontend"):
            assert path in str(err)


class TestUnreachableGitLab:
    def test_closed_port_is_not_a_bad_token(self, spec, monkeypatch):
        # given a GitLab URL where nothing listens
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", f"http://127.0.0.1:{port}")
        # when validating
        err = fail(spec, BOT)
        # then it is a retryable reachability error naming the URL
        assert err.code == "GITLAB_UNREACHABLE" and err.retryable and is_retryable(err)
        assert f"127.0.0.1:{port}" in str(err)

    def test_read_timeout_is_not_a_bad_token(self, world, spec):
        # given a GitLab slower than the client's timeout
        requests.post(f"{world.url}/_sandbox/settings", json={"latency_ms": 400}, timeout=5)
        gl = cloud.gitlab_for(spec)
        gl.timeout = 0.1
        with pytest.raises(PipelineError) as err:
            validate_token(gl, spec)
        assert err.value.code == "GITLAB_UNREACHABLE" and err.value.retryable

    def test_tls_to_a_plain_http_port_is_unreachable(self, world, spec, monkeypatch):
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", world.url.replace("http://", "https://"))
        err = fail(spec, BOT)
        assert err.code == "GITLAB_UNREACHABLE" and "TLS" in str(err)
