"""The sandbox's GitLab REST v4 side, driven by python-gitlab (built by acrvpc.cloud.clients) and raw HTTP."""

from __future__ import annotations

import copy
import re
import warnings
from datetime import timedelta
from typing import Any

import gitlab
import pytest
import requests

from acrvpc.cloud import clients as cloud

BOT = "glpat-sandbox-release-bot-0001"  # release-bot, api + read_repository
READ_USER = "glpat-sandbox-read-user-00001"
EXPIRED = "glpat-sandbox-expired-000001"
REVOKED = "glpat-sandbox-revoked-000001"
ALICE = "glpat-sandbox-alice-0000001"  # alice, api, never expires
READ_API = "glpat-sbx-test-read-api-0001"
REPO_ONLY = "glpat-sbx-test-repo-only-001"
INACTIVE = "glpat-sbx-test-inactive-0001"


@pytest.fixture
def world(sandbox):
    """The default world plus test tokens and an internal project."""
    scenario = copy.deepcopy(sandbox.world.scenario)
    scenario["gitlab"]["tokens"] += [
        {"token": READ_API, "user": "release-bot", "name": "read-api", "scopes": ["read_api"], "expires_in_days": 30},
        {
            "token": REPO_ONLY,
            "user": "release-bot",
            "name": "repo-only",
            "scopes": ["read_repository"],
            "expires_in_days": None,
        },
        {
            "token": INACTIVE,
            "user": "release-bot",
            "name": "inactive",
            "scopes": ["api"],
            "expires_in_days": 30,
            "active": False,
        },
    ]
    scenario["gitlab"]["projects"].append(
        {
            "id": 45,
            "path_with_namespace": "platform/docs",
            "default_branch": "trunk",
            "visibility": "internal",
            "members": {"alice": 50},
        }
    )
    sandbox.world.reset(scenario)
    return sandbox


def client(token: str) -> gitlab.Gitlab:
    return cloud.gitlab_client("http://gitlab.invalid", token)


def api(sandbox, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
    return requests.request(method, f"{sandbox.url}/api/v4{path}", headers=headers or {}, timeout=5, **kw)


def calls(sandbox) -> list[dict[str, Any]]:
    return requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]


class TestGetUser:
    def test_returns_the_token_owner_with_documented_fields(self, world):
        # given the release-bot token
        gl = client(BOT)
        # when authenticating
        gl.auth()
        # then GET /user describes release-bot
        user = gl.user.asdict()
        assert (user["id"], user["username"], user["name"], user["state"]) == (
            7,
            "release-bot",
            "Release Bot",
            "active",
        )
        for key in (
            "avatar_url",
            "web_url",
            "created_at",
            "email",
            "two_factor_enabled",
            "can_create_project",
            "identities",
            "bot",
            "commit_email",
        ):
            assert key in user

    def test_web_url_starts_with_the_client_url_so_auth_does_not_warn(self, world):
        # given a client that would warn on a foreign web_url
        gl = client(BOT)
        gl.keep_base_url = False
        # when authenticating with warnings as errors
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gl.auth()
        # then web_url is under the URL the client used
        assert gl.user.web_url == f"{gl.url}/release-bot"

    def test_bearer_header_is_accepted(self, world):
        # when the token is sent as OAuth bearer
        resp = api(world, "GET", "/user", {"Authorization": f"Bearer {ALICE}"})
        # then it authenticates alice
        assert resp.status_code == 200 and resp.json()["username"] == "alice"

    def test_read_user_scope_is_enough(self, world):
        gl = client(READ_USER)
        gl.auth()
        assert gl.user.username == "release-bot"

    def test_unknown_token_is_401_unauthorized(self, world):
        resp = api(world, "GET", "/user", {"PRIVATE-TOKEN": "glpat-nobody"})
        assert (resp.status_code, resp.json()) == (401, {"message": "401 Unauthorized"})

    def test_missing_token_is_401(self, world):
        assert api(world, "GET", "/user").status_code == 401

    def test_revoked_token_is_401_invalid_token(self, world):
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as err:
            client(REVOKED).auth()
        assert err.value.response_code == 401
        assert err.value.error_message == "invalid_token"
        assert b"Token was revoked. You have to re-authorize from the user." in err.value.response_body

    def test_expired_token_is_401_token_has_expired(self, world):
        resp = api(world, "GET", "/user", {"PRIVATE-TOKEN": EXPIRED})
        assert resp.status_code == 401
        assert resp.json() == {"error": "invalid_token", "error_description": "Token has expired."}
        assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]

    def test_repository_only_token_lacks_scope(self, world):
        resp = api(world, "GET", "/user", {"PRIVATE-TOKEN": REPO_ONLY})
        assert resp.status_code == 403
        assert resp.json() == {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": "api read_api read_user",
        }

    def test_token_expires_when_the_sandbox_clock_passes_its_date(self, world):
        # given a token valid for 180 days
        # when 181 sandbox days pass
        world.world.clock.advance(181 * 86400)
        # then it is expired
        resp = api(world, "GET", "/user", {"PRIVATE-TOKEN": BOT})
        assert resp.json()["error_description"] == "Token has expired."

    def test_blocked_user_is_forbidden(self, world):
        world.world.gitlab.users["alice"].state = "blocked"
        resp = api(world, "GET", "/user", {"PRIVATE-TOKEN": ALICE})
        assert resp.status_code == 403


class TestGetVersion:
    def test_returns_the_scenario_version(self, world):
        assert client(BOT).version() == ("17.5.1", world.world.gitlab.revision)

    def test_needs_a_token(self, world):
        assert api(world, "GET", "/version").status_code == 401


class TestGetPersonalAccessTokenSelf:
    def test_describes_the_token_used(self, world):
        # given the release-bot token
        # when reading its own record
        pat = client(BOT).personal_access_tokens.get("self").asdict()
        # then the documented fields are there, the secret is not
        assert set(pat) >= {
            "id",
            "name",
            "revoked",
            "created_at",
            "scopes",
            "user_id",
            "last_used_at",
            "active",
            "expires_at",
        }
        assert (pat["name"], pat["scopes"], pat["user_id"], pat["active"], pat["revoked"]) == (
            "acr-build",
            ["api", "read_repository"],
            7,
            True,
            False,
        )
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", pat["expires_at"])
        assert pat["last_used_at"] is not None
        assert BOT not in str(pat)

    def test_expiry_is_counted_from_the_sandbox_date(self, world):
        pat = client(BOT).personal_access_tokens.get("self")
        today = world.world.gitlab.today()
        assert pat.expires_at == (today + timedelta(days=180)).isoformat()

    def test_never_expiring_token_has_null_expiry(self, world):
        assert client(ALICE).personal_access_tokens.get("self").expires_at is None

    @pytest.mark.parametrize("token", [READ_USER, REPO_ONLY])
    def test_any_scope_may_read_itself(self, world, token):
        assert client(token).personal_access_tokens.get("self").revoked is False

    def test_inactive_flag_from_the_scenario(self, world):
        assert client(INACTIVE).personal_access_tokens.get("self").active is False

    def test_revoked_token_cannot_read_itself(self, world):
        with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
            client(REVOKED).personal_access_tokens.get("self")


class TestGetProject:
    def test_by_path_with_permissions_and_urls(self, world):
        # given release-bot, Maintainer of platform/billing-api
        gl = client(BOT)
        # when reading the project by its path
        project = gl.projects.get("platform/billing-api")
        # then the documented fields describe it
        assert (project.id, project.path_with_namespace, project.default_branch, project.visibility) == (
            42,
            "platform/billing-api",
            "main",
            "private",
        )
        assert project.permissions == {
            "project_access": {"access_level": 40, "notification_level": 3},
            "group_access": None,
        }
        assert project.http_url_to_repo == f"{world.url}/platform/billing-api.git"
        assert project.web_url == f"{world.url}/platform/billing-api"
        assert project.namespace["full_path"] == "platform" and project.namespace["kind"] == "group"
        assert project.path == "billing-api"

    def test_by_numeric_id(self, world):
        project = client(BOT).projects.get(43)
        assert project.path_with_namespace == "platform/web-frontend"
        assert project.permissions["project_access"]["access_level"] == 30

    def test_url_encoded_path_on_the_wire(self, world):
        resp = api(world, "GET", "/projects/platform%2Fweb-frontend", {"PRIVATE-TOKEN": BOT})
        assert resp.status_code == 200 and resp.json()["id"] == 43

    def test_unknown_project_is_404(self, world):
        with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
            client(BOT).projects.get("platform/nope")
        assert (err.value.response_code, err.value.error_message) == (404, "404 Project Not Found")

    def test_private_project_of_others_is_404(self, world):
        # given secret/vault-tools where release-bot is not a member
        with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
            client(BOT).projects.get("secret/vault-tools")
        # then it looks exactly like a missing project
        assert (err.value.response_code, err.value.error_message) == (404, "404 Project Not Found")

    def test_internal_project_is_visible_without_membership(self, world):
        project = client(BOT).projects.get("platform/docs")
        assert project.permissions == {"project_access": None, "group_access": None}
        assert project.default_branch == "trunk"

    def test_read_user_token_lacks_scope(self, world):
        with pytest.raises(gitlab.exceptions.GitlabGetError) as err:
            client(READ_USER).projects.get(42)
        assert (err.value.response_code, err.value.error_message) == (403, "insufficient_scope")
        assert b'"scope":"api read_api"' in err.value.response_body

    def test_read_api_token_may_read(self, world):
        assert client(READ_API).projects.get(42).id == 42


class TestProjectHooks:
    HOOK = {
        "url": "http://127.0.0.1:9/gitlab",
        "push_events": True,
        "tag_push_events": True,
        "merge_requests_events": False,
        "token": "hook-secret-1",
        "enable_ssl_verification": True,
    }

    def test_maintainer_creates_and_lists_without_the_token(self, world):
        # given release-bot, Maintainer of project 42
        project = client(BOT).projects.get(42)
        # when adding a hook
        hook = project.hooks.create(dict(self.HOOK))
        # then it is created, listed, recorded in the model, and its token is never returned
        assert (hook.url, hook.project_id, hook.push_events, hook.tag_push_events, hook.issues_events) == (
            "http://127.0.0.1:9/gitlab",
            42,
            True,
            True,
            False,
        )
        assert "token" not in hook.asdict()
        listed = project.hooks.list(get_all=True)
        assert [h.id for h in listed] == [hook.id]
        assert "hook-secret-1" not in str([h.asdict() for h in listed])
        assert world.world.gitlab.hooks[hook.id].token == "hook-secret-1"

    def test_create_is_a_write_in_the_call_log_without_the_secret(self, world):
        client(BOT).projects.get(42, lazy=True).hooks.create(dict(self.HOOK))
        last = calls(world)[-1]
        assert (last["action"], last["writes"], last["status"]) == ("POST /projects/:id/hooks", True, 201)
        assert "hook-secret-1" not in str(calls(world))

    def test_developer_may_not_create(self, world):
        # given release-bot, Developer of platform/web-frontend
        project = client(BOT).projects.get("platform/web-frontend", lazy=True)
        with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
            project.hooks.create(dict(self.HOOK))
        assert (err.value.response_code, err.value.error_message) == (403, "403 Forbidden")
        assert world.world.gitlab.hooks == {}

    def test_developer_may_not_list(self, world):
        with pytest.raises(gitlab.exceptions.GitlabListError) as err:
            client(BOT).projects.get(43, lazy=True).hooks.list(get_all=True)
        assert err.value.response_code == 403

    def test_read_api_token_may_not_create(self, world):
        with pytest.raises(gitlab.exceptions.GitlabCreateError) as err:
            client(READ_API).projects.get(42, lazy=True).hooks.create(dict(self.HOOK))
        assert (err.value.response_code, err.value.error_message) == (403, "insufficient_scope")
        assert b'"scope":"api"' in err.value.response_body

    def test_url_is_required(self, world):
        resp = api(world, "POST", "/projects/42/hooks", {"PRIVATE-TOKEN": BOT}, json={"push_events": True})
        assert (resp.status_code, resp.json()) == (400, {"error": "url is missing"})

    def test_url_must_be_http(self, world):
        resp = api(world, "POST", "/projects/42/hooks", {"PRIVATE-TOKEN": BOT}, json={"url": "ftp://x/y"})
        assert resp.status_code == 422 and "url" in resp.json()["message"]

    def test_get_update_and_delete(self, world):
        # given a hook
        project = client(BOT).projects.get(42, lazy=True)
        hook = project.hooks.create(dict(self.HOOK))
        # when reading, changing the URL, then deleting it
        assert project.hooks.get(hook.id).url == self.HOOK["url"]
        hook.url = "http://127.0.0.1:9/other"
        hook.save()
        assert world.world.gitlab.hooks[hook.id].token == ""  # GitLab resets the secret with the URL
        project.hooks.delete(hook.id)
        # then it is gone
        assert project.hooks.list(get_all=True) == []
        assert calls(world)[-2]["action"] == "DELETE /projects/:id/hooks/:hook_id"

    def test_delete_unknown_hook_is_404(self, world):
        with pytest.raises(gitlab.exceptions.GitlabDeleteError) as err:
            client(BOT).projects.get(42, lazy=True).hooks.delete(999)
        assert err.value.response_code == 404

    def test_hooks_by_project_path(self, world):
        resp = api(
            world,
            "POST",
            "/projects/platform%2Fbilling-api/hooks",
            {"PRIVATE-TOKEN": BOT},
            json={"url": "http://127.0.0.1:9/h", "token": "t"},
        )
        assert resp.status_code == 201 and resp.json()["project_id"] == 42 and "token" not in resp.json()


class TestUnknownRoutes:
    def test_unemulated_endpoint_is_404_not_found(self, world):
        resp = api(world, "GET", "/projects/42/issues", {"PRIVATE-TOKEN": BOT})
        assert (resp.status_code, resp.json()) == (404, {"message": "404 Not Found"})
        assert calls(world)[-1]["action"] == "GET (unknown)"

    def test_routes_are_named_in_the_call_log(self, world):
        gl = client(BOT)
        gl.auth()
        gl.personal_access_tokens.get("self")
        gl.projects.get("platform/billing-api")
        assert [c["action"] for c in calls(world)] == [
            "GET /user",
            "GET /personal_access_tokens/self",
            "GET /projects/:id",
        ]
        assert not any(c["writes"] for c in calls(world))


class TestProjectByPath:
    def test_finds_a_project_case_insensitively(self, world):
        assert world.world.gitlab.project_by_path("Platform/Billing-API")["id"] == 42

    def test_unknown_path_is_none(self, world):
        assert world.world.gitlab.project_by_path("platform/nope") is None
        assert 42 in world.world.gitlab.projects
