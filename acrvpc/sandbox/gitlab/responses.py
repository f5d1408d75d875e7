"""GitLab REST v4 routes: ``handle(world, method, path, query, headers, body, base_url)``.

One handler per endpoint: authenticate with the endpoint's scopes, call the model, shape the
documented JSON (``doc/api/users.md`` "Get the current user", ``personal_access_tokens.md``,
``version.md``, ``projects.md`` "Get a single project", ``project_webhooks.md``).

Scopes per endpoint (``lib/api/api.rb``: ``api`` everywhere, ``read_api`` on GET/HEAD;
``users.rb`` / ``version.rb`` add ``read_user`` for GET; ``personal_access_tokens/self_information.rb``
admits every scope).

Emulated routes: ``GET /user``, ``GET /version``, ``GET /personal_access_tokens/self``,
``GET /projects/:id``, ``GET|POST /projects/:id/hooks``, ``GET|PUT|DELETE /projects/:id/hooks/:hook_id``.
Anything else answers 404 ``{"message": "404 Not Found"}``.

Assumptions:
- Hook URLs are checked only for an http(s) scheme and a host; GitLab's "local network"
  outbound-request block is not emulated (the sandbox's receivers live on loopback).
- Every URL in a reply (``web_url``, ``http_url_to_repo``, ``_links``) is built from the URL the
  client used to reach the sandbox, as GitLab builds them from its ``external_url``.
- Signing tokens (GitLab 19, ``signing_token`` on create/update) are stored and never returned; a
  hook shows ``signing_token_present`` only when ``gitlab.version`` is 19 or later. Changing a hook's
  URL keeps its signing token (it resets only the secret token).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import BadRequest, GitLabApiError, NotFound, Unprocessable
from .models import MAINTAINER, Hook, Token, User, iso

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World

ANY_SCOPE = None
READ = ("api", "read_api")
READ_USER = ("api", "read_api", "read_user")
WRITE = ("api",)

_HOOK_EVENTS = (
    "push_events",
    "issues_events",
    "confidential_issues_events",
    "merge_requests_events",
    "tag_push_events",
    "note_events",
    "confidential_note_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "deployment_events",
    "releases_events",
    "feature_flag_events",
    "repository_update_events",
    "resource_access_token_events",
    "emoji_events",
    "member_events",
    "project_events",
    "milestone_events",
    "vulnerability_events",
)
_HOOK_SETTINGS = (
    "name",
    "description",
    "push_events_branch_filter",
    "branch_filter_strategy",
    "custom_webhook_template",
)


class _Ctx:
    """One request: the world, its inputs, and helpers to authenticate."""

    def __init__(
        self, world: World, method: str, query: dict[str, str], headers: dict[str, str], body: bytes, base_url: str
    ) -> None:
        self.world, self.gl = world, world.gitlab
        self.method, self.query, self.headers, self.raw_body = method, query, headers, body
        self.base_url = base_url.rstrip("/")

    def secret(self) -> str | None:
        if self.headers.get("private-token"):
            return self.headers["private-token"].strip()
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return self.query.get("private_token") or self.query.get("access_token") or None

    def auth(self, accepted: tuple[str, ...] | None) -> tuple[User, Token]:
        return self.gl.authenticate(self.secret(), accepted)

    def json_body(self) -> dict[str, Any]:
        if not self.raw_body:
            return {}
        try:
            data = json.loads(self.raw_body)
        except ValueError:
            raise BadRequest("The request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("The request body must be a JSON object")
        return data


# -- shapes --------------------------------------------------------------------------------
def _user_json(ctx: _Ctx, user: User) -> dict[str, Any]:
    created = iso(ctx.gl.seeded_at - timedelta(days=365))
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": user.state,
        "locked": False,
        "avatar_url": f"https://www.gravatar.com/avatar/{user.id:032x}?s=80&d=identicon",
        "web_url": f"{ctx.base_url}/{user.username}",
        "created_at": created,
        "bio": "",
        "location": "",
        "public_email": None,
        "skype": "",
        "linkedin": "",
        "twitter": "",
        "discord": "",
        "website_url": "",
        "organization": "",
        "job_title": "",
        "pronouns": None,
        "bot": user.bot,
        "work_information": None,
        "local_time": None,
        "last_sign_in_at": created,
        "confirmed_at": created,
        "last_activity_on": ctx.gl.today().isoformat(),
        "email": user.email,
        "theme_id": 1,
        "color_scheme_id": 1,
        "projects_limit": 100000,
        "current_sign_in_at": created,
        "identities": [],
        "can_create_group": True,
        "can_create_project": True,
        "two_factor_enabled": False,
        "external": False,
        "private_profile": False,
        "commit_email": user.email,
    }


def _token_json(ctx: _Ctx, token: Token, user: User) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "revoked": token.revoked,
        "created_at": iso(token.created_at),
        "description": None,
        "scopes": list(token.scopes),
        "user_id": user.id,
        "last_used_at": iso(token.last_used_at),
        "active": ctx.gl.token_active(token),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def _project_json(ctx: _Ctx, project: dict[str, Any], user: User | None) -> dict[str, Any]:
    base, full, pid = ctx.base_url, project["path_with_namespace"], project["id"]
    host = urlsplit(base).netloc
    ns = project["namespace"]
    level = ctx.gl.access_level(user, project) if user else None
    created = iso(project["created_at"])
    return {
        "id": pid,
        "description": project.get("description"),
        "name": project["name"],
        "name_with_namespace": f"{ns.split('/')[-1]} / {project['name']}",
        "path": project["path"],
        "path_with_namespace": full,
        "created_at": created,
        "default_branch": project["default_branch"],
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": f"git@{host.split(':')[0]}:{full}.git",
        "http_url_to_repo": f"{base}/{full}.git",
        "web_url": f"{base}/{full}",
        "readme_url": f"{base}/{full}/-/blob/{project['default_branch']}/README.md",
        "avatar_url": None,
        "forks_count": 0,
        "star_count": 0,
        "last_activity_at": created,
        "namespace": {
            "id": project["namespace_id"],
            "name": ns.split("/")[-1],
            "path": ns.split("/")[-1],
            "kind": project["namespace_kind"],
            "full_path": ns,
            "parent_id": None,
            "avatar_url": None,
            "web_url": f"{base}/{'groups/' if project['namespace_kind'] == 'group' else ''}{ns}",
        },
        "container_registry_image_prefix": f"{host}/{full}",
        "_links": {
            k: f"{base}/api/v4/projects/{pid}{suffix}"
            for k, suffix in (
                ("self", ""),
                ("issues", "/issues"),
                ("merge_requests", "/merge_requests"),
                ("repo_branches", "/repository/branches"),
                ("labels", "/labels"),
                ("events", "/events"),
                ("members", "/members"),
                ("cluster_agents", "/cluster_agents"),
            )
        },
        "empty_repo": False,
        "archived": False,
        "visibility": project["visibility"],
        "resolve_outdated_diff_discussions": False,
        "container_registry_enabled": True,
        "issues_enabled": True,
        "merge_requests_enabled": True,
        "wiki_enabled": True,
        "jobs_enabled": True,
        "snippets_enabled": True,
        "shared_runners_enabled": True,
        "creator_id": 1,
        "import_status": "none",
        "open_issues_count": 0,
        "ci_default_git_depth": 20,
        "public_jobs": True,
        "shared_with_groups": [],
        "only_allow_merge_if_pipeline_succeeds": False,
        "request_access_enabled": True,
        "merge_method": "merge",
        "squash_option": "default_off",
        "permissions": {
            "project_access": None if level is None else {"access_level": level, "notification_level": 3},
            "group_access": None,
        },
    }


def _signs(version: str) -> bool:
    """GitLab 19 added signing tokens (and ``signing_token_present`` on hooks)."""
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 19


def _hook_json(hook: Hook, version: str) -> dict[str, Any]:
    a = hook.attrs
    out: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "name": a.get("name", ""),
        "description": a.get("description", ""),
        "project_id": hook.project_id,
    }
    for event in _HOOK_EVENTS:
        out[event] = bool(a.get(event, event == "push_events"))
    out.update(
        {
            "push_events_branch_filter": a.get("push_events_branch_filter", ""),
            "branch_filter_strategy": a.get("branch_filter_strategy", "wildcard"),
            "enable_ssl_verification": bool(a.get("enable_ssl_verification", True)),
            "alert_status": "executable",
            "disabled_until": None,
            "url_variables": [],
            "created_at": iso(hook.created_at),
            "custom_webhook_template": a.get("custom_webhook_template", ""),
            "custom_headers": [{"key": h.get("key")} for h in a.get("custom_headers", []) if isinstance(h, dict)],
        }
    )
    if _signs(version):  # the token itself is never returned
        out["signing_token_present"] = bool(a.get(SIGNING_TOKEN))
    return out


SIGNING_TOKEN = "_signing_token"  # where a hook's signing token is kept (an attribute never returned)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _hook_attrs(data: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key in _HOOK_EVENTS + ("enable_ssl_verification",):
        if key in data:
            attrs[key] = _flag(data[key])
    for key in _HOOK_SETTINGS:
        if key in data and data[key] is not None:
            attrs[key] = str(data[key])
    if isinstance(data.get("custom_headers"), list):
        attrs["custom_headers"] = data["custom_headers"]
    if isinstance(data.get("signing_token"), str):
        attrs[SIGNING_TOKEN] = data["signing_token"]
    return attrs


def _check_hook_url(url: Any) -> str:
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Unprocessable({"url": ["is blocked: Only allowed schemes are http, https"]})
    return str(url)


# -- handlers ------------------------------------------------------------------------------
def get_user(ctx: _Ctx) -> tuple[int, Any]:
    user, _ = ctx.auth(READ_USER)
    return 200, _user_json(ctx, user)


def get_version(ctx: _Ctx) -> tuple[int, Any]:
    ctx.auth(READ_USER)
    return 200, {
        "version": ctx.gl.version,
        "revision": ctx.gl.revision,
        "kas": {"enabled": False, "externalUrl": None, "externalK8sProxyUrl": None, "version": None},
        "enterprise": False,
    }


def get_token_self(ctx: _Ctx) -> tuple[int, Any]:
    user, token = ctx.auth(ANY_SCOPE)
    return 200, _token_json(ctx, token, user)


def get_project(ctx: _Ctx, project_id: str) -> tuple[int, Any]:
    user, _ = ctx.auth(READ)
    return 200, _project_json(ctx, ctx.gl.visible_project(user, project_id), user)


def _hook_project(ctx: _Ctx, project_id: str, accepted: tuple[str, ...]) -> dict[str, Any]:
    user, _ = ctx.auth(accepted)
    project = ctx.gl.visible_project(user, project_id)
    ctx.gl.require_role(user, project, MAINTAINER)
    return project


def list_hooks(ctx: _Ctx, project_id: str) -> tuple[int, Any]:
    project = _hook_project(ctx, project_id, READ)
    return 200, [_hook_json(h, ctx.gl.version) for h in ctx.gl.list_hooks(project)]


def create_hook(ctx: _Ctx, project_id: str) -> tuple[int, Any]:
    project = _hook_project(ctx, project_id, WRITE)
    data = ctx.json_body()
    if not data.get("url"):
        raise BadRequest("url is missing")
    url = _check_hook_url(data["url"])
    hook = ctx.gl.add_hook(project, url, str(data.get("token") or ""), _hook_attrs(data))
    return 201, _hook_json(hook, ctx.gl.version)


def get_hook(ctx: _Ctx, project_id: str, hook_id: str) -> tuple[int, Any]:
    project = _hook_project(ctx, project_id, READ)
    return 200, _hook_json(ctx.gl.get_hook(project, hook_id), ctx.gl.version)


def update_hook(ctx: _Ctx, project_id: str, hook_id: str) -> tuple[int, Any]:
    project = _hook_project(ctx, project_id, WRITE)
    hook = ctx.gl.get_hook(project, hook_id)
    data = ctx.json_body()
    url = _check_hook_url(data["url"]) if data.get("url") else None
    token = str(data["token"]) if data.get("token") is not None else None
    return 200, _hook_json(ctx.gl.update_hook(hook, url, token, _hook_attrs(data)), ctx.gl.version)


def delete_hook(ctx: _Ctx, project_id: str, hook_id: str) -> tuple[int, Any]:
    project = _hook_project(ctx, project_id, WRITE)
    ctx.gl.delete_hook(ctx.gl.get_hook(project, hook_id))
    return 204, None


_ID = r"(?P<project_id>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str, Callable[..., tuple[int, Any]]]] = [
    ("GET", re.compile(r"/user"), "GET /user", get_user),
    ("GET", re.compile(r"/version"), "GET /version", get_version),
    ("GET", re.compile(r"/personal_access_tokens/self"), "GET /personal_access_tokens/self", get_token_self),
    ("GET", re.compile(rf"/projects/{_ID}"), "GET /projects/:id", get_project),
    ("GET", re.compile(rf"/projects/{_ID}/hooks"), "GET /projects/:id/hooks", list_hooks),
    ("POST", re.compile(rf"/projects/{_ID}/hooks"), "POST /projects/:id/hooks", create_hook),
    ("GET", re.compile(rf"/projects/{_ID}/hooks/(?P<hook_id>[^/]+)"), "GET /projects/:id/hooks/:hook_id", get_hook),
    ("PUT", re.compile(rf"/projects/{_ID}/hooks/(?P<hook_id>[^/]+)"), "PUT /projects/:id/hooks/:hook_id", update_hook),
    (
        "DELETE",
        re.compile(rf"/projects/{_ID}/hooks/(?P<hook_id>[^/]+)"),
        "DELETE /projects/:id/hooks/:hook_id",
        delete_hook,
    ),
]


def handle(
    world: World, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes, base_url: str
) -> tuple[int, Any, dict[str, str], str]:
    """Answer one GitLab API request.

    Args:
        path: the path below ``/api/v4`` (e.g. ``/projects/platform%2Fbilling-api``), still URL-encoded.
        base_url: ``http://host:port`` as the client addressed the sandbox (for ``web_url`` fields).

    Returns:
        ``(status, json_body, extra_headers, route)`` where ``route`` names the endpoint for the
        call log, e.g. ``"GET /projects/:id"``.
    """
    path = path.rstrip("/") or "/"
    ctx = _Ctx(world, method, query, headers, body, base_url)
    for verb, pattern, route, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if verb == method and match:
            try:
                status, reply = handler(ctx, **match.groupdict())
            except GitLabApiError as err:
                return err.status, err.body(), err.headers(), route
            return status, reply, {}, route
    missing = NotFound()
    return missing.status, missing.body(), {}, f"{method} (unknown)"
